// open_store() dispatches on the URL scheme to the backends compiled into
// this build, and get_idempotency_checker() builds the process-wide default
// on top of it. Both live here, not in idem::core, so that the core never
// links a backend.
#include <cstdlib>
#include <mutex>

#include "idem/core/checker.h"
#include "idem/core/store.h"
#include "idem/stores/memory.h"
#ifdef IDEM_HAVE_SQLITE
#include "idem/stores/sqlite.h"
#endif
#ifdef IDEM_HAVE_REDIS
#include "idem/stores/redis.h"
#endif
#ifdef IDEM_HAVE_POSTGRES
#include "idem/stores/postgres.h"
#endif

namespace idem {

Result<std::shared_ptr<Store>> open_store(std::string_view url) { return open_store(url, OpenOptions{}); }

Result<std::shared_ptr<Store>> open_store(std::string_view url, const OpenOptions& options) {
  const auto scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) {
    return Error(ErrorCode::kInvalidConfiguration,
                 "store URL '" + std::string(url) +
                     "' has no scheme (expected memory://, sqlite:///path, redis://, postgresql://...)");
  }
  const std::string_view scheme = url.substr(0, scheme_end);
  if (scheme == "memory") return MemoryStore::open(url, options);
#ifdef IDEM_HAVE_SQLITE
  if (scheme == "sqlite") return SqliteStore::open(url, options);
#endif
#ifdef IDEM_HAVE_REDIS
  // A network store has nothing to create: `options` does not apply.
  if (scheme == "redis" || scheme == "rediss" || scheme == "redis+sentinel" || scheme == "redis+cluster") {
    return RedisStore::open(url);
  }
#endif
#ifdef IDEM_HAVE_POSTGRES
  // The schema is a store to create: `options` applies (see OpenOptions).
  if (scheme == "postgresql" || scheme == "postgres") return PostgresStore::open(url, options);
#endif
  return Error(ErrorCode::kInvalidConfiguration,
               "store URL scheme '" + std::string(scheme) + "' is not supported by this build of idem");
}

Result<std::shared_ptr<IdempotencyChecker>> IdempotencyChecker::from_url(std::string_view url, CheckerOptions options) {
  if (auto valid = options.validate(); !valid) return std::move(valid).error();
  auto store = open_store(url);
  if (!store) return std::move(store).error();
  return std::make_shared<IdempotencyChecker>(std::move(*store), std::move(options));
}

namespace {
std::mutex g_default_mutex;

// The URL for messages: never a password.
std::string shown_url(std::string_view url) {
#ifdef IDEM_HAVE_POSTGRES
  return PostgresStore::redact_url(url);  // masks user info and password= keys of any scheme
#else
  return std::string(url);
#endif
}

std::shared_ptr<IdempotencyChecker> g_default_checker;  // guarded by g_default_mutex
}  // namespace

std::shared_ptr<IdempotencyChecker> get_idempotency_checker() {
  std::lock_guard lock(g_default_mutex);
  if (!g_default_checker) {
    const char* configured = std::getenv("IDEM_STORE_URL");
    const std::string url = (configured != nullptr && configured[0] != '\0') ? configured : default_store_url();
    auto store = open_store(url);
    if (!store) {
      const std::string message = "cannot open the default store '" + shown_url(url) + "': " + store.error().message();
      if (store.error().code() == ErrorCode::kInvalidConfiguration) {
        throw ConfigurationError(Error(ErrorCode::kInvalidConfiguration, message));
      }
      throw StoreUnavailableError(Error(ErrorCode::kUnavailable, message));
    }
    g_default_checker = std::make_shared<IdempotencyChecker>(std::move(*store));
  }
  return g_default_checker;
}

void set_idempotency_checker(std::shared_ptr<IdempotencyChecker> checker) {
  std::lock_guard lock(g_default_mutex);
  g_default_checker = std::move(checker);
}

}  // namespace idem
