// File: fuzz/fuzz_store_url.cpp
//
// libFuzzer target for the store URL parsers behind idem::open_store():
// MemoryStore::open and SqliteStore::open. URLs come from configuration
// (IDEM_STORE_URL), which is often assembled from templates and secrets, so a
// typo must give a clear error, never a crash or a huge allocation.
//
// Only memory:// and sqlite:// are ever opened, and SQLite files only inside
// a private temporary directory: the fuzzed bytes may not contain '/', '\\'
// or '%' before they reach the path, so no input can climb out of it.
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

namespace {

[[noreturn]] void fail(const char* what, const std::string& url) {
  std::fprintf(stderr, "fuzz_store_url: %s\nurl: %s\n", what, url.c_str());
  std::abort();
}

class ScratchDir {
 public:
  ScratchDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "idem-fuzz-url-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) {
      std::perror("mkdtemp");
      std::abort();
    }
    path_ = pattern;
  }
  ~ScratchDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  const std::filesystem::path& path() const { return path_; }

  // Empties the directory between inputs so that files do not pile up.
  void clear() const {
    std::error_code ignored;
    for (const auto& entry : std::filesystem::directory_iterator(path_, ignored)) {
      std::filesystem::remove_all(entry.path(), ignored);
    }
  }

 private:
  std::filesystem::path path_;
};

ScratchDir& scratch() {
  static ScratchDir dir;  // removed at exit
  return dir;
}

std::string confined(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c == '/' || c == '\\' || c == '%') c = '_';
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const bool sqlite = (data[0] & 1U) != 0;
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);

  std::string url;
  if (sqlite) {
    // The rest is appended to a file name in the scratch directory: it can
    // change the name and add a query (?busy_timeout_ms=..., ?fsync=...).
    url = "sqlite://" + (scratch().path() / "db").string() + confined(rest);
  } else {
    url = "memory://" + std::string(rest);
  }

  auto store = idem::open_store(url);
  if (!store) {
    if (store.error().message().empty()) fail("rejection without a message", url);
  } else {
    const std::string_view expected = sqlite ? "sqlite" : "memory";
    if ((*store)->kind() != expected) fail("open_store returned a store of another kind", url);
    if (!(*store)->ping().ok()) fail("a store that opened does not answer ping()", url);
  }
  if (sqlite) {
    store = idem::Error(idem::ErrorCode::kInternal, "closed");  // close the database before deleting its files
    scratch().clear();
  }
  return 0;
}
