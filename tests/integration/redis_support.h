// File: tests/integration/redis_support.h
//
// Helpers shared by the Redis integration tests: start redis-server (plain,
// TLS, replica, sentinel) on free loopback ports in temp dirs, and a raw
// command helper that bypasses the store (to inspect and manipulate the
// server: INFO commandstats, MEMORY USAGE, FLUSHALL, CONFIG SET, ...).
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "idem/stores/redis.h"
#include "support/server_process.h"

namespace idem::test {

// Paths of the Redis binaries (env IDEM_REDIS_SERVER / IDEM_REDIS_CLI
// override PATH); empty when missing.
std::string redis_server_binary();
std::string redis_cli_binary();

struct RedisTlsFiles {
  std::string ca_cert;
  std::string server_cert;
  std::string server_key;
  std::string client_cert;
  std::string client_key;
};

// make_tls_files() creates a CA, a server certificate for 127.0.0.1 and
// localhost, and a client certificate, with the openssl CLI, in `dir`.
std::optional<RedisTlsFiles> make_tls_files(const std::string& dir, std::string* error);

class RedisServer {
 public:
  // start() runs redis-server on 127.0.0.1 with persistence off. `args` are
  // extra redis-server arguments ("--requirepass", "x", ...). With `tls`, the
  // server listens with TLS only (port 0 for plain TCP).
  static std::unique_ptr<RedisServer> start(std::vector<std::string> args, std::string* error,
                                            const RedisTlsFiles* tls = nullptr, bool tls_auth_clients = false,
                                            int port = 0);

  int port() const { return port_; }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_); }
  ServerProcess& process() { return *process_; }
  const std::string& dir() const { return dir_->path(); }

  // command() sends one command on a fresh connection and returns the reply
  // flattened to text (arrays joined by '\n', nil as "(nil)"); nullopt and a
  // message on failure. Uses the password given with --requirepass, if any.
  std::optional<std::string> command(const std::vector<std::string>& args, std::string* error = nullptr) const;

  // stat_calls() returns cmdstat_<name> calls from INFO commandstats.
  std::uint64_t stat_calls(const std::string& name) const;

 private:
  RedisServer() = default;
  std::unique_ptr<TempDir> dir_;
  std::unique_ptr<ServerProcess> process_;
  int port_ = 0;
  std::string password_;
  const RedisTlsFiles* tls_ = nullptr;
};

// StandaloneRedis is the gtest Environment of a test binary that shares one
// standalone redis-server between its tests:
//
//   [[maybe_unused]] ::testing::Environment* const g_env =
//       ::testing::AddGlobalTestEnvironment(new idem::test::StandaloneRedis);
//   ... idem::test::StandaloneRedis::server()->url() ...
class StandaloneRedis : public ::testing::Environment {
 public:
  void SetUp() override;
  void TearDown() override;
  // server() is the running server, or nullptr (before SetUp, or skipped).
  static RedisServer* server();

 private:
  std::unique_ptr<RedisServer> server_;
};

// raw_command() is RedisServer::command() for any endpoint.
std::optional<std::string> raw_command(const RedisEndpoint& endpoint, const std::vector<std::string>& args,
                                       std::string* error = nullptr, const std::string& password = {},
                                       const RedisTlsOptions* tls = nullptr);

}  // namespace idem::test
