// PostgresServer; see postgres_server.h.
#include "support/postgres_server.h"

#include <libpq-fe.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

namespace idem::test {
namespace {

struct RunAs {
  bool needed = false;  // we are root: drop to the postgres user
  uid_t uid = 0;
  gid_t gid = 0;
};

std::optional<RunAs> run_as(std::string* error) {
  RunAs r;
  if (::geteuid() != 0) return r;
  const passwd* pw = ::getpwnam("postgres");
  if (pw == nullptr) {
    if (error != nullptr) *error = "running as root and there is no 'postgres' user to run PostgreSQL as";
    return std::nullopt;
  }
  r.needed = true;
  r.uid = pw->pw_uid;
  r.gid = pw->pw_gid;
  return r;
}

// The command line prefix that runs a program as the postgres user.
std::vector<std::string> as_postgres(const RunAs& who, const std::string& setpriv) {
  if (!who.needed) return {};
  return {setpriv, "--reuid=" + std::to_string(who.uid), "--regid=" + std::to_string(who.gid), "--init-groups",
          // The server must die with the test binary (a crash leaves
          // nothing running); setpriv sets it after switching users, which
          // would otherwise clear it.
          "--pdeathsig", "SIGKILL"};
}

bool give_to(const RunAs& who, const std::string& path) {
  return !who.needed || ::chown(path.c_str(), who.uid, who.gid) == 0;
}

bool make_tls(const std::string& dir, const RunAs& who, std::string* ca, std::string* error) {
  const std::string openssl = find_binary("openssl", "IDEM_OPENSSL");
  if (openssl.empty()) {
    *error = "openssl not found";
    return false;
  }
  { std::ofstream(dir + "/san.ext") << "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"; }
  const std::vector<std::vector<std::string>> steps = {
      {openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=idem-pg-test-ca",
       "-keyout", dir + "/ca.key", "-out", dir + "/ca.crt"},
      {openssl, "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", dir + "/server.key",
       "-out", dir + "/server.csr"},
      {openssl, "x509", "-req", "-in", dir + "/server.csr", "-CA", dir + "/ca.crt", "-CAkey", dir + "/ca.key",
       "-CAcreateserial", "-days", "2", "-extfile", dir + "/san.ext", "-out", dir + "/server.crt"},
  };
  std::string out;
  for (const auto& step : steps) {
    if (run_command(step, &out) != 0) {
      *error = "openssl failed: " + out;
      return false;
    }
  }
  // PostgreSQL refuses a key readable by others or not its own.
  ::chmod((dir + "/server.key").c_str(), 0600);
  if (!give_to(who, dir + "/server.key") || !give_to(who, dir + "/server.crt")) {
    *error = "cannot hand the TLS files to the postgres user";
    return false;
  }
  *ca = dir + "/ca.crt";
  return true;
}

}  // namespace

std::string postgres_bin_dir() {
  std::string dir = "/usr/lib/postgresql/15/bin";
  if (const char* v = std::getenv("IDEM_PG_BINDIR"); v != nullptr && *v != '\0') dir = v;
  if (::access((dir + "/postgres").c_str(), X_OK) != 0 || ::access((dir + "/initdb").c_str(), X_OK) != 0) return {};
  return dir;
}

bool postgres_available() { return !postgres_bin_dir().empty(); }

std::unique_ptr<PostgresServer> PostgresServer::start(const PostgresServerOptions& options, std::string* error) {
  std::string ignored;
  std::string& err = error != nullptr ? *error : ignored;
  const std::string bin = postgres_bin_dir();
  if (bin.empty()) {
    err = "PostgreSQL binaries not found (install postgresql-15 or set IDEM_PG_BINDIR)";
    return nullptr;
  }
  const std::optional<RunAs> who = run_as(&err);
  if (!who) return nullptr;
  const std::string setpriv = find_binary("setpriv", nullptr, {"/usr/bin", "/bin"});
  if (who->needed && setpriv.empty()) {
    err = "setpriv (util-linux) not found; it runs PostgreSQL as the postgres user";
    return nullptr;
  }
  std::unique_ptr<PostgresServer> server(new PostgresServer());
  server->dir_ = std::make_unique<TempDir>("pg");
  const std::string& dir = server->dir_->path();
  if (!give_to(*who, dir)) {
    err = "cannot chown " + dir + " to the postgres user";
    return nullptr;
  }
  const std::string pwfile = dir + "/pw";
  { std::ofstream(pwfile) << kPassword << "\n"; }
  give_to(*who, pwfile);

  std::vector<std::string> initdb = as_postgres(*who, setpriv);
  for (const std::string& a :
       {bin + "/initdb", std::string("-D"), dir + "/data", std::string("-U"), std::string(kUser),
        std::string("--auth-local=trust"), std::string("--auth-host=scram-sha-256"), "--pwfile=" + pwfile,
        std::string("-E"), std::string("UTF8"), std::string("--locale=C"), std::string("--no-sync")}) {
    initdb.push_back(a);
  }
  std::string out;
  if (run_command(initdb, &out, std::chrono::seconds(120)) != 0) {
    err = "initdb failed: " + out;
    return nullptr;
  }
  if (options.tls && !make_tls(dir, *who, &server->ca_file_, &err)) return nullptr;

  server->port_ = free_port();
  ServerSpec spec;
  std::vector<std::string> args = as_postgres(*who, setpriv);
  if (who->needed) {
    spec.binary = setpriv;
    args.erase(args.begin());
    args.push_back(bin + "/postgres");
  } else {
    spec.binary = bin + "/postgres";
  }
  std::vector<std::string> settings = {"listen_addresses=127.0.0.1", "unix_socket_directories=" + dir,
                                       // A test server: durability is not what is being tested, speed is welcome.
                                       "fsync=off", "full_page_writes=off", "max_connections=200",
                                       "shared_buffers=32MB", "log_min_messages=warning",
                                       "log_min_error_statement=panic"};
  if (options.tls) {
    settings.push_back("ssl=on");
    settings.push_back("ssl_cert_file=" + dir + "/server.crt");
    settings.push_back("ssl_key_file=" + dir + "/server.key");
  }
  settings.insert(settings.end(), options.settings.begin(), options.settings.end());
  for (const std::string& a : {std::string("-D"), dir + "/data", std::string("-p"), std::to_string(server->port_)}) {
    args.push_back(a);
  }
  for (const std::string& s : settings) {
    args.push_back("-c");
    args.push_back(s);
  }
  spec.args = std::move(args);
  spec.work_dir = dir;
  spec.port = server->port_;
  spec.name = "postgres";
  spec.stop_signal = SIGINT;
  spec.start_timeout = std::chrono::seconds(60);
  spec.stop_grace = std::chrono::seconds(15);
  const std::string ping =
      "host=127.0.0.1 port=" + std::to_string(server->port_) + " dbname=postgres connect_timeout=2";
  spec.ready = [ping] { return PQping(ping.c_str()) == PQPING_OK; };
  server->process_ = ServerProcess::start(std::move(spec), &err);
  if (!server->process_) return nullptr;
  return server;
}

PostgresServer::~PostgresServer() {
  if (process_) process_->stop();
}

std::string PostgresServer::url(std::string_view query) const {
  std::string u = "postgresql://" + std::string(kUser) + ":" + std::string(kPassword) +
                  "@127.0.0.1:" + std::to_string(port_) + "/postgres";
  const bool tls_query = query.find("sslmode=") != std::string_view::npos;
  u += tls_query ? "?" : "?sslmode=disable";
  if (!query.empty()) {
    if (!tls_query) u += "&";
    u.append(query);
  }
  return u;
}

std::optional<std::string> PostgresServer::exec(const std::string& sql, std::string* error) const {
  const std::string conninfo = "host=127.0.0.1 port=" + std::to_string(port_) +
                               " dbname=postgres user=" + std::string(kUser) + " password=" + std::string(kPassword) +
                               " sslmode=disable connect_timeout=5";
  PGconn* c = PQconnectdb(conninfo.c_str());
  if (PQstatus(c) != CONNECTION_OK) {
    if (error != nullptr) *error = PQerrorMessage(c);
    PQfinish(c);
    return std::nullopt;
  }
  PQsetNoticeProcessor(
      c, [](void*, const char*) {}, nullptr);
  PGresult* r = PQexec(c, sql.c_str());
  const ExecStatusType st = PQresultStatus(r);
  std::optional<std::string> out;
  if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
    std::string text;
    for (int i = 0; i < PQntuples(r); ++i) {
      if (i > 0) text += '\n';
      for (int j = 0; j < PQnfields(r); ++j) {
        if (j > 0) text += '|';
        text += PQgetisnull(r, i, j) != 0 ? "(null)" : PQgetvalue(r, i, j);
      }
    }
    out = std::move(text);
  } else if (error != nullptr) {
    *error = PQresultErrorMessage(r);
  }
  PQclear(r);
  PQfinish(c);
  return out;
}

void PostgresServer::stop() {
  if (process_) process_->stop();
}

void PostgresServer::kill() {
  if (!process_ || !process_->running()) return;
  // The whole process group (ServerProcess puts the postmaster in its own):
  // backends left behind would keep the shared memory and block a restart.
  const pid_t group = process_->pid();
  ::kill(-group, SIGKILL);
  process_->kill();
  for (int i = 0; i < 500 && ::kill(-group, 0) == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

bool PostgresServer::restart(std::string* error) { return process_->restart(error); }

void PostgresEnvironment::SetUp() {
  if (!postgres_available()) IDEM_SKIP_OR_FAIL("PostgreSQL 15 not found (install postgresql-15 or set IDEM_PG_BINDIR)");
  std::string err;
  server_ = PostgresServer::start(options_, &err);
  ASSERT_TRUE(server_) << err;
}

}  // namespace idem::test
