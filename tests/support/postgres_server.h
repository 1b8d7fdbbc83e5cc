// File: tests/support/postgres_server.h
//
// PostgresServer runs a throw-away PostgreSQL 15 for a test binary: initdb
// into a temp dir, then postgres on a free 127.0.0.1 port, both as the
// `postgres` user when the tests run as root (CI does; PostgreSQL refuses to
// run as root). Password authentication over TCP (scram-sha-256), optional
// TLS with a fresh CA. Start one per test binary: initdb takes a second.
//
//   if (!idem::test::postgres_available()) IDEM_SKIP_OR_FAIL("PostgreSQL 15 not found");
//   std::string err;
//   auto pg = idem::test::PostgresServer::start({}, &err);
//   ASSERT_TRUE(pg) << err;
//   auto store = idem::PostgresStore::open(pg->url("schema=t1"));
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "support/server_process.h"

namespace idem::test {

// The directory of initdb and postgres: $IDEM_PG_BINDIR, else
// /usr/lib/postgresql/15/bin; empty when they are not there.
std::string postgres_bin_dir();
bool postgres_available();

struct PostgresServerOptions {
  bool tls = false;                     // ssl=on with a certificate for 127.0.0.1 / localhost
  std::vector<std::string> settings{};  // extra "name=value" server settings (-c)
};

class PostgresServer {
 public:
  static std::unique_ptr<PostgresServer> start(const PostgresServerOptions& options, std::string* error);
  ~PostgresServer();
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  int port() const noexcept { return port_; }
  static constexpr std::string_view kUser = "postgres";
  static constexpr std::string_view kPassword = "idem-test-pw";
  // postgresql://postgres:<pw>@127.0.0.1:<port>/postgres?sslmode=disable&<query>
  std::string url(std::string_view query = "") const;
  // The CA that signed the server certificate (TLS only).
  const std::string& ca_file() const noexcept { return ca_file_; }

  // exec() runs SQL as the superuser on a fresh connection and returns the
  // rows, fields joined by '|' and rows by '\n'; nullopt and a message on
  // failure.
  std::optional<std::string> exec(const std::string& sql, std::string* error = nullptr) const;

  ServerProcess& process() noexcept { return *process_; }
  const std::string& dir() const noexcept { return dir_->path(); }
  // stop() is a fast shutdown (SIGINT); kill() a crash (SIGKILL, the
  // backends are killed too); restart() starts it again on the same port.
  void stop();
  void kill();
  bool restart(std::string* error);

 private:
  PostgresServer() = default;
  std::unique_ptr<TempDir> dir_;
  std::unique_ptr<ServerProcess> process_;
  int port_ = 0;
  std::string ca_file_;
};

// PostgresEnvironment starts one server for a whole test binary (skipped, or
// failed under IDEM_REQUIRE_SERVERS=1, when PostgreSQL is missing):
//
//   auto* const g_pg = static_cast<idem::test::PostgresEnvironment*>(
//       ::testing::AddGlobalTestEnvironment(new idem::test::PostgresEnvironment({.tls = true})));
//   ... g_pg->server().url("schema=t1") ...
class PostgresEnvironment : public ::testing::Environment {
 public:
  explicit PostgresEnvironment(PostgresServerOptions options = {}) : options_(std::move(options)) {}
  void SetUp() override;
  void TearDown() override { server_.reset(); }
  PostgresServer& server() { return *server_; }

 private:
  PostgresServerOptions options_;
  std::unique_ptr<PostgresServer> server_;
};

}  // namespace idem::test
