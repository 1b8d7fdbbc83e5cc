// File: fuzz/fuzz_store_url.cpp
//
// libFuzzer target for store URLs, the way idem::open_store() reads them
// (IDEM_STORE_URL, --store): every URL form it accepts and every way to get
// one wrong. URLs come from configuration, often assembled from templates and
// secrets, so a typo must give a clear error, never a crash or a huge
// allocation. The first byte picks the form, the rest is fuzzed:
//
//   0  memory://<rest>                      opened and pinged (memory://name too)
//   1  sqlite:///<scratch dir>/db<rest>     absolute path, opened and pinged
//   2  sqlite://<rest>                      relative path (to the scratch dir)
//   3  <rest> as a whole URL: any scheme or none. memory and sqlite go
//      through open_store (sqlite confined as in 1 and 2); unknown schemes
//      and no scheme must be rejected with kInvalidConfiguration; the network
//      schemes (redis*, postgres*) are never opened, since a store may
//      connect or resolve names: Redis URLs go to RedisStore::parse_url
//      (fuzz_redis_url explores them in depth).
//
// Bit 2 of the first byte opens with create_if_missing = false: then no
// SQLite file may be created, and none can be opened (the scratch directory
// is empty between inputs). Bad URLs must be kInvalidConfiguration.
//
// SQLite files are only ever created inside a private temporary directory:
// the fuzzed bytes may not contain '/', '\\' or '%' when they reach a path.
#include <fcntl.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>

#include "idem/core/error.h"
#include "idem/core/store.h"
#ifdef IDEM_FUZZ_HAVE_REDIS
#include "idem/stores/redis.h"
#endif
#include "scratch_dir.h"

namespace {

[[noreturn]] void fail(const char* what, const std::string& url) {
  std::fprintf(stderr, "fuzz_store_url: %s\nurl: %s\n", what, url.c_str());
  std::abort();
}

using idem::fuzz::ScratchDir;

ScratchDir& scratch() {
  static ScratchDir dir("url");  // removed at exit
  return dir;
}

// InScratch makes the scratch directory the working directory for its scope,
// so that relative sqlite:// paths land there. Only for the open: libFuzzer
// reads corpus and artifact paths relative to the directory it started in.
class InScratch {
 public:
  InScratch() : previous_(::open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) {
    if (previous_ < 0 || ::chdir(scratch().path().c_str()) != 0) {
      std::perror("entering the scratch directory");
      std::abort();
    }
  }
  ~InScratch() {
    if (::fchdir(previous_) != 0) {
      std::perror("fchdir");
      std::abort();
    }
    ::close(previous_);
  }
  InScratch(const InScratch&) = delete;
  InScratch& operator=(const InScratch&) = delete;

 private:
  int previous_;
};

std::string confined(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c == '/' || c == '\\' || c == '%') c = '_';
  }
  return out;
}

// Schemes whose stores talk to a server: never opened here.
bool network_scheme(std::string_view scheme) {
  return scheme.rfind("redis", 0) == 0 || scheme.rfind("rediss", 0) == 0 || scheme.rfind("postgres", 0) == 0;
}

void check_rejection(const idem::Error& e, const std::string& url) {
  if (e.message().empty()) fail("rejection without a message", url);
}

// Whether open_store() may create a store that does not exist yet (bit 2 of
// the first byte); inspection tools open with false.
bool g_create = true;

void open_and_check(const std::string& url, std::string_view expected_kind, bool sqlite) {
  auto store = idem::open_store(url, {.create_if_missing = g_create});
  if (!store) {
    check_rejection(store.error(), url);
    // Refusing to create must not leave anything behind.
    if (!g_create && sqlite && !std::filesystem::is_empty(scratch().path())) {
      fail("open_store created files although create_if_missing was false", url);
    }
  } else {
    if ((*store)->kind() != expected_kind) fail("open_store returned a store of another kind", url);
    if (!(*store)->ping().ok()) fail("a store that opened does not answer ping()", url);
    // Nothing exists in the scratch directory between inputs, so only a
    // plain memory:// (always a new private store) may open without creating.
    if (!g_create && sqlite) fail("create_if_missing = false opened a database that did not exist", url);
  }
  if (sqlite) {
    store = idem::Error(idem::ErrorCode::kInternal, "closed");  // close the database before deleting its files
    scratch().clear();
  }
}

void whole_url(std::string_view text) {
  const auto sep = text.find("://");
  if (sep == std::string_view::npos) {
    auto store = idem::open_store(text);
    if (store) fail("a URL without a scheme was accepted", std::string(text));
    if (store.error().code() != idem::ErrorCode::kInvalidConfiguration) {
      fail("no scheme: not kInvalidConfiguration", std::string(text));
    }
    check_rejection(store.error(), std::string(text));
    return;
  }
  const std::string_view scheme = text.substr(0, sep);
  const std::string_view rest = text.substr(sep + 3);
  if (scheme == "memory") return open_and_check(std::string(text), "memory", false);
  if (scheme == "sqlite") {
    return open_and_check("sqlite://" + (scratch().path() / "db").string() + confined(rest), "sqlite", true);
  }
  if (network_scheme(scheme)) {
#ifdef IDEM_FUZZ_HAVE_REDIS
    if (scheme.rfind("redis", 0) == 0) {
      auto parsed = idem::RedisStore::parse_url(text);
      if (!parsed) check_rejection(parsed.error(), std::string(text));
    }
#endif
    return;
  }
  auto store = idem::open_store(text);
  if (store) fail("an unknown scheme was accepted", std::string(text));
  if (store.error().code() != idem::ErrorCode::kInvalidConfiguration) {
    fail("an unknown scheme: not kInvalidConfiguration", std::string(text));
  }
  check_rejection(store.error(), std::string(text));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  g_create = (data[0] & 4U) == 0;
  switch (data[0] % 4) {
    case 0: open_and_check("memory://" + std::string(rest), "memory", false); break;
    // The rest is appended to a file name in the scratch directory: it can
    // change the name and add a query (?busy_timeout_ms=..., ?fsync=...).
    case 1: open_and_check("sqlite://" + (scratch().path() / "db").string() + confined(rest), "sqlite", true); break;
    // Relative paths resolve against the working directory.
    case 2: {
      InScratch here;
      open_and_check("sqlite://" + confined(rest), "sqlite", true);
      break;
    }
    default: whole_url(rest); break;
  }
  return 0;
}
