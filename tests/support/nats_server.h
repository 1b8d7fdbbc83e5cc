// File: tests/support/nats_server.h
//
// NatsServer: a real `nats-server -js` for tests, on a free loopback port,
// with its JetStream store in a temp dir that survives stop()/restart() (so a
// restarted server still has its streams, consumers and messages).
//
//   std::string err;
//   auto server = idem::test::NatsServer::start(&err);
//   if (!server) IDEM_SKIP_OR_FAIL(err);
//   ... connect to server->url() ...
//   server->process().stop(); server->process().restart(&err);
#pragma once

#include <memory>
#include <string>

#include "support/server_process.h"

namespace idem::test {

// Path of nats-server (env IDEM_NATS_SERVER overrides PATH, then
// /usr/sbin, where Debian installs it); empty when missing.
std::string nats_server_binary();

class NatsServer {
 public:
  // start() runs nats-server with JetStream on 127.0.0.1; nullptr and a
  // message (with the server's log) on failure. A missing binary is reported
  // as "nats-server not found" (use IDEM_SKIP_OR_FAIL).
  static std::unique_ptr<NatsServer> start(std::string* error);

  int port() const noexcept { return port_; }
  std::string url() const { return "nats://127.0.0.1:" + std::to_string(port_); }
  const std::string& dir() const noexcept { return dir_->path(); }
  ServerProcess& process() noexcept { return *process_; }

 private:
  NatsServer() = default;
  std::unique_ptr<TempDir> dir_;
  std::unique_ptr<ServerProcess> process_;
  int port_ = 0;
};

}  // namespace idem::test
