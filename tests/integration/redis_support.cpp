// Redis test helpers; see redis_support.h.
#include "integration/redis_support.h"

#include <fstream>
#include <sstream>

#include "stores/redis/blocking_connection.h"

namespace idem::test {
namespace {

void flatten(const redisReply* r, std::string& out) {
  switch (r->type) {
    case REDIS_REPLY_ARRAY:
      for (std::size_t i = 0; i < r->elements; ++i) {
        if (i > 0) out += '\n';
        flatten(r->element[i], out);
      }
      break;
    case REDIS_REPLY_INTEGER: out += std::to_string(r->integer); break;
    case REDIS_REPLY_NIL: out += "(nil)"; break;
    default: out.append(r->str, r->len);
  }
}

}  // namespace

namespace {
RedisServer* g_standalone = nullptr;
}  // namespace

void StandaloneRedis::SetUp() {
  if (redis_server_binary().empty()) IDEM_SKIP_OR_FAIL("redis-server not found (set IDEM_REDIS_SERVER)");
  std::string err;
  server_ = RedisServer::start({}, &err);
  ASSERT_TRUE(server_) << err;
  g_standalone = server_.get();
}

void StandaloneRedis::TearDown() {
  g_standalone = nullptr;
  server_.reset();
}

RedisServer* StandaloneRedis::server() { return g_standalone; }

std::string redis_server_binary() { return find_binary("redis-server", "IDEM_REDIS_SERVER"); }
std::string redis_cli_binary() { return find_binary("redis-cli", "IDEM_REDIS_CLI"); }

std::optional<RedisTlsFiles> make_tls_files(const std::string& dir, std::string* error) {
  RedisTlsFiles f{dir + "/ca.crt", dir + "/server.crt", dir + "/server.key", dir + "/client.crt", dir + "/client.key"};
  const std::string openssl = find_binary("openssl", "IDEM_OPENSSL");
  if (openssl.empty()) {
    if (error) *error = "openssl CLI not found";
    return std::nullopt;
  }
  std::string ext = dir + "/san.ext";
  { std::ofstream(ext) << "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"; }
  std::string out;
  const std::vector<std::vector<std::string>> steps = {
      {openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=idem-test-ca", "-keyout",
       dir + "/ca.key", "-out", f.ca_cert},
      {openssl, "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", f.server_key, "-out",
       dir + "/server.csr"},
      {openssl, "x509", "-req", "-in", dir + "/server.csr", "-CA", f.ca_cert, "-CAkey", dir + "/ca.key",
       "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", f.server_cert},
      {openssl, "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=idem-client", "-keyout", f.client_key, "-out",
       dir + "/client.csr"},
      {openssl, "x509", "-req", "-in", dir + "/client.csr", "-CA", f.ca_cert, "-CAkey", dir + "/ca.key",
       "-CAcreateserial", "-days", "2", "-out", f.client_cert},
  };
  for (const auto& step : steps) {
    if (run_command(step, &out) != 0) {
      if (error) *error = "openssl failed: " + out;
      return std::nullopt;
    }
  }
  return f;
}

std::unique_ptr<RedisServer> RedisServer::start(std::vector<std::string> args, std::string* error,
                                                const RedisTlsFiles* tls, bool tls_auth_clients, int port) {
  std::unique_ptr<RedisServer> s(new RedisServer());
  s->dir_ = std::make_unique<TempDir>("redis");
  s->port_ = port > 0 ? port : free_port();
  s->tls_ = tls;
  for (std::size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] == "--requirepass") s->password_ = args[i + 1];
  }
  ServerSpec spec;
  spec.binary = redis_server_binary();
  spec.name = "redis-" + std::to_string(s->port_);
  spec.work_dir = s->dir_->path();
  spec.port = s->port_;
  spec.args = {"--bind", "127.0.0.1",     "--save",           "",   "--appendonly", "no", "--daemonize", "no",
               "--dir",  s->dir_->path(), "--protected-mode", "no", "--logfile",    ""};
  if (tls != nullptr) {
    spec.args.insert(spec.args.end(), {"--port", "0", "--tls-port", std::to_string(s->port_), "--tls-cert-file",
                                       tls->server_cert, "--tls-key-file", tls->server_key, "--tls-ca-cert-file",
                                       tls->ca_cert, "--tls-auth-clients", tls_auth_clients ? "yes" : "no"});
  } else {
    spec.args.insert(spec.args.end(), {"--port", std::to_string(s->port_)});
  }
  spec.args.insert(spec.args.end(), args.begin(), args.end());
  s->process_ = ServerProcess::start(std::move(spec), error);
  if (!s->process_) return nullptr;
  return s;
}

std::optional<std::string> raw_command(const RedisEndpoint& endpoint, const std::vector<std::string>& args,
                                       std::string* error, const std::string& password, const RedisTlsOptions* tls) {
  namespace rd = idem::redis_detail;
  std::shared_ptr<rd::TlsContext> ctx;
  if (tls != nullptr) {
    auto c = rd::TlsContext::create(*tls);
    if (!c) {
      if (error) *error = c.error().to_string();
      return std::nullopt;
    }
    ctx = *c;
  }
  rd::Handshake hs;
  if (!password.empty()) {
    rd::append_command(hs.bytes, {"AUTH", password});
    hs.replies = 1;
  }
  auto conn =
      rd::BlockingConnection::connect(endpoint, ctx.get(), std::chrono::seconds(5), std::chrono::seconds(30), hs);
  if (!conn) {
    if (error) *error = conn.error().to_string();
    return std::nullopt;
  }
  std::vector<std::string_view> argv(args.begin(), args.end());
  std::string out;
  rd::append_command(out, argv);
  std::vector<rd::ReplyPtr> replies;
  Status st = (*conn)->roundtrip(out, 1, replies, rd::Clock::now() + std::chrono::seconds(30));
  if (!st) {
    if (error) *error = st.error().to_string();
    return std::nullopt;
  }
  if (replies[0]->type == REDIS_REPLY_ERROR) {
    if (error) *error = std::string(replies[0]->str, replies[0]->len);
    return std::nullopt;
  }
  std::string text;
  flatten(replies[0].get(), text);
  return text;
}

std::optional<std::string> RedisServer::command(const std::vector<std::string>& args, std::string* error) const {
  RedisTlsOptions opt;
  if (tls_ != nullptr) {
    opt.enabled = true;
    opt.ca_file = tls_->ca_cert;
    opt.cert_file = tls_->client_cert;
    opt.key_file = tls_->client_key;
  }
  return raw_command(RedisEndpoint{"127.0.0.1", static_cast<std::uint16_t>(port_)}, args, error, password_,
                     tls_ != nullptr ? &opt : nullptr);
}

std::uint64_t RedisServer::stat_calls(const std::string& name) const {
  std::optional<std::string> info = command({"INFO", "commandstats"});
  if (!info) return 0;
  const std::string needle = "cmdstat_" + name + ":calls=";
  const auto pos = info->find(needle);
  if (pos == std::string::npos) return 0;
  return std::stoull(info->substr(pos + needle.size()));
}

}  // namespace idem::test
