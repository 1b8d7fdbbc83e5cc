#include "support/nats_server.h"

namespace idem::test {

std::string nats_server_binary() { return find_binary("nats-server", "IDEM_NATS_SERVER", {"/usr/sbin"}); }

std::unique_ptr<NatsServer> NatsServer::start(std::string* error) {
  const std::string binary = nats_server_binary();
  if (binary.empty()) {
    if (error != nullptr) *error = "nats-server not found (install nats-server or set IDEM_NATS_SERVER)";
    return nullptr;
  }
  std::unique_ptr<NatsServer> s(new NatsServer());
  s->dir_ = std::make_unique<TempDir>("nats");
  s->port_ = free_port();
  ServerSpec spec;
  spec.binary = binary;
  spec.name = "nats-" + std::to_string(s->port_);
  spec.work_dir = s->dir_->path();
  spec.port = s->port_;
  // No HTTP monitoring and no cluster ports: only the client port, so that
  // parallel tests never collide.
  spec.args = {"-js", "-a",     "127.0.0.1", "-p", std::to_string(s->port_), "-sd", s->dir_->path() + "/jetstream",
               "-n",  spec.name};
  s->process_ = ServerProcess::start(std::move(spec), error);
  if (!s->process_) return nullptr;
  return s;
}

}  // namespace idem::test
