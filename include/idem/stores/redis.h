/// @file idem/stores/redis.h
/// @brief The Redis store: standalone, TLS, Sentinel and Cluster.
///
/// RedisStore keeps records in Redis (standalone, TLS, Sentinel or Cluster).
/// A claim on a new key is one plain `SET key record NX GET PXAT expiry`; a
/// duplicate is decided from the record that same command returns; takeovers,
/// retries, complete, fail, extend and checkpoint are one Lua script each. All
/// are one round trip (docs/redis.md).
///
/// Every operation is asynchronous underneath: an event-loop I/O thread keeps
/// a few connections per server continuously pipelined (requests are written
/// as they arrive, replies completed in order, a whole read at a time). The
/// *_async forms of Store (store.h) use it directly and call their callback on
/// that thread; the synchronous forms wait for it, and a caller alone on an
/// idle connection does its own I/O on its own thread.
///
/// @code
/// auto store = idem::RedisStore::open("redis://127.0.0.1:6379/0");
/// auto tls = idem::RedisStore::open("rediss://cache:6380?ca=/etc/ssl/ca.pem");
/// auto ha = idem::RedisStore::open("redis+sentinel://s1:26379,s2:26379/mymaster");
/// auto big = idem::RedisStore::open("redis+cluster://n1:7000,n2:7001");
/// @endcode
///
/// The store connects lazily: create() and open() only fail on bad options
/// (an unreadable CA file, a malformed URL); an unreachable server shows up as
/// kUnavailable / kTimeout on the calls themselves, so a service may start
/// while Redis is down and the fail-closed / fail-open policy applies.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "idem/core/error.h"
#include "idem/core/store.h"

namespace idem {

/// RedisMode selects how endpoints are interpreted.
enum class RedisMode : std::uint8_t {
  kStandalone,  ///< endpoints[0] is the server
  kSentinel,    ///< endpoints are sentinels; master_name names the master
  kCluster,     ///< endpoints are seed nodes of a Redis Cluster
};

/// RedisEndpoint is one server address: a Redis node or a sentinel.
struct RedisEndpoint {
  std::string host = "127.0.0.1";  ///< host name or IP address
  std::uint16_t port = 6379;       ///< TCP port
};

/// RedisTlsOptions configure TLS (OpenSSL; `rediss://`, or `tls=1` for
/// Sentinel and Cluster URLs).
struct RedisTlsOptions {
  bool enabled = false;  ///< speak TLS to every node (and sentinel)
  /// PEM file of trusted CAs. Empty: the system's default trust store.
  std::string ca_file;
  /// Optional client certificate and key (PEM), for servers started with
  /// tls-auth-clients yes. Both or neither.
  std::string cert_file;
  std::string key_file;  ///< the client certificate's private key (PEM)
  /// Verify the server certificate chain and that it names the host (or the
  /// IP address). Turn off only for tests.
  bool verify = true;
  /// Server name sent in SNI and checked against the certificate. Empty: the
  /// endpoint's host.
  std::string sni;
};

/// RedisRetryOptions bound the retries of one operation.
struct RedisRetryOptions {
  /// Total tries per operation, the first included. 1 disables retries.
  /// Only retryable errors are retried (connection refused or reset, timeout,
  /// -LOADING, -BUSY, -TRYAGAIN, -MASTERDOWN, -READONLY, -CLUSTERDOWN), and an
  /// operation that may already have run on the server (the request was sent)
  /// is retried only when running it twice is harmless; a claim is not.
  std::uint32_t max_attempts = 3;
  std::chrono::milliseconds base_backoff{20};  ///< doubled per retry
  std::chrono::milliseconds max_backoff{500};  ///< the longest wait between two tries
  /// Fraction of each backoff that is randomized, 0..1 (full jitter at 1).
  double jitter = 0.5;
};

// Each server (node) has its own circuit breaker, so one dead Cluster master
// does not fail the keys of the others. Store::circuit_state() and
// on_circuit_change report the worst of them; RedisStore::client_stats()
// lists each.

/// RedisCircuitBreakerOptions configure each node's circuit breaker.
struct RedisCircuitBreakerOptions {
  bool enabled = true;  ///< false: calls always go to the server
  /// Consecutive failed calls (unavailable or timeout) that open the circuit.
  std::uint32_t failure_threshold = 5;
  /// How long the circuit stays open before a probe is allowed.
  std::chrono::milliseconds open_duration{1'000};
};

/// RedisLayout is how the store writes new records (it reads every layout).
enum class RedisLayout : std::uint8_t {
  kPacked,  ///< a short text header and the values (~200 bytes a completed record)
  /// JSON with every field of the original Python module's record model plus
  /// Idem's own, so that module can read it (migration, docs/guide/migration.md)
  kJson,
};

/// RedisStoreOptions configure a RedisStore; open() builds them from a URL.
struct RedisStoreOptions {
  RedisMode mode = RedisMode::kStandalone;  ///< how `endpoints` are read
  /// Standalone: the server. Sentinel: the sentinels. Cluster: seed nodes.
  std::vector<RedisEndpoint> endpoints{RedisEndpoint{}};
  std::string master_name;  ///< Sentinel only
  /// AUTH: password alone (requirepass), or an ACL user and its password.
  std::string username;
  std::string password;  ///< see username; empty: no AUTH
  /// Password for the sentinels themselves (sentinel requirepass); empty: none.
  std::string sentinel_password;
  int db = 0;           ///< SELECT; must be 0 in Cluster mode
  RedisTlsOptions tls;  ///< TLS for every connection
  /// Bound on establishing one connection: TCP, TLS handshake, AUTH, SELECT.
  std::chrono::milliseconds connect_timeout{2'000};
  /// Bound on one request, from the moment it is written until its reply is
  /// in. A timed-out connection is closed, never reused, so replies cannot get
  /// out of step; everything still on it fails.
  std::chrono::milliseconds command_timeout{1'000};
  /// Pipelined connections per server node, shared by every thread and every
  /// request in flight; a small number goes a long way.
  std::size_t pool_size = 2;
  RedisRetryOptions retry;                     ///< retries of retryable errors
  RedisCircuitBreakerOptions circuit_breaker;  ///< per-node circuit breakers
  /// When > 0, claims and completions (complete, fail) are followed by
  /// `WAIT wait_replicas wait_timeout` in the same round trip. A claim counts
  /// as acquired only once that many replicas have it; otherwise it fails with
  /// kUnavailable and the handler must not run (the key stays PROCESSING until
  /// its lease expires). A completion that is not confirmed fails with
  /// kUnavailable too: it is on the master, but a failover before the replicas
  /// have it would lose it, and the key would run again after its lease.
  std::uint32_t wait_replicas = 0;
  std::chrono::milliseconds wait_timeout{100};  ///< the WAIT timeout (URL `wait_timeout_ms`)
  /// Layout of the records this store creates (URL `layout=packed|json`).
  RedisLayout layout = RedisLayout::kPacked;
  /// Read the records the original Python module left under the prefix (URL
  /// `legacy=1|0`): a completed one is a duplicate, a failed one is retried,
  /// a processing one is in progress until first_seen_at + legacy_lease (URL
  /// `legacy_lease_ms`), then taken over. false: such a value is kCorrupt,
  /// like any other value that is not an Idem record.
  bool legacy_records = true;
  /// How long a legacy PROCESSING record counts as in progress, from its
  /// first_seen_at (the original module had no lease). Default 5 minutes.
  std::chrono::milliseconds legacy_lease{300'000};
  /// Called with the worst state of the nodes' breakers when it changes, on
  /// the thread whose call changed it, outside any internal lock; the state may
  /// have changed again by the time it runs.
  std::function<void(CircuitState)> on_circuit_change;

  /// validate() reports the first inconsistent option as kInvalidConfiguration.
  Status validate() const;
};

/// RedisNodeStats is one server's circuit breaker.
struct RedisNodeStats {
  std::string address;                           ///< host:port (Sentinel: "sentinel:<master name>:0")
  CircuitState circuit = CircuitState::kClosed;  ///< its breaker's state
};

/// RedisClientStats are counters of one store instance, for tests and metrics.
struct RedisClientStats {
  std::uint64_t round_trips = 0;                 ///< writes of one or more requests to a connection
  std::uint64_t commands = 0;                    ///< commands sent (clock refreshes included)
  std::uint64_t connects = 0;                    ///< connections established
  std::uint64_t retries = 0;                     ///< operation retries after retryable errors
  std::uint64_t rejected = 0;                    ///< calls failed fast by an open circuit
  std::uint64_t redirects = 0;                   ///< MOVED / ASK followed (Cluster)
  std::uint64_t clock_syncs = 0;                 ///< TIME samples of the servers' clocks
  std::uint64_t topology_refreshes = 0;          ///< Cluster slot maps fetched
  CircuitState circuit = CircuitState::kClosed;  ///< the worst of the nodes'
  std::vector<RedisNodeStats> nodes;             ///< every node's breaker
};

/// RedisStore makes Redis stores; the stores themselves are used through
/// the Store interface (store.h).
class RedisStore {
 public:
  /// create() validates the options and sets up TLS (kInvalidConfiguration
  /// on a bad option or an unreadable certificate); it does not connect.
  static Result<std::shared_ptr<Store>> create(RedisStoreOptions options);

  /// open() accepts:
  /// @verbatim
  /// redis://[[user]:password@]host[:port][/db][?query]
  /// rediss://...                          (TLS)
  /// redis+sentinel://[[user]:password@]host:port[,host:port...]/master[/db][?query]
  /// redis+cluster://[[user]:password@]host:port[,host:port...][?query]
  /// @endverbatim
  /// query keys: ca, cert, key, verify=0|1, sni, tls=1 (for sentinel/cluster),
  /// connect_timeout_ms, command_timeout_ms, pool_size, retries,
  /// breaker_threshold, breaker_open_ms, wait_replicas, wait_timeout_ms,
  /// sentinel_password, layout=packed|json, legacy=0|1, legacy_lease_ms.
  /// User and password are percent-decoded.
  static Result<std::shared_ptr<Store>> open(std::string_view url);

  /// parse_url() is open() without creating the store.
  static Result<RedisStoreOptions> parse_url(std::string_view url);

  /// client_stats() returns the counters of a store made by create()/open(),
  /// or nullopt for any other store.
  static std::optional<RedisClientStats> client_stats(const Store& store);
};

}  // namespace idem
