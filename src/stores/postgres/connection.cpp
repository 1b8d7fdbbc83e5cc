#include "stores/postgres/connection.h"

#include <algorithm>

namespace idem::pg {

ConnParams::ConnParams(const PostgresStoreOptions& o, bool blocking_timeout) {
  auto add_if = [this](const char* key, const std::string& value) {
    if (!value.empty()) add(key, value);
  };
  add_if("host", o.host);
  add_if("port", o.port);
  add_if("dbname", o.dbname);
  add_if("user", o.user);
  add_if("password", o.password);
  add_if("sslmode", o.sslmode);
  add_if("sslrootcert", o.sslrootcert);
  add_if("sslcert", o.sslcert);
  add_if("sslkey", o.sslkey);
  add_if("application_name", o.application_name);
  for (const auto& [key, value] : o.libpq_params) add(key, value);
  // Keys and results are UTF-8 whatever the server's default is.
  add("client_encoding", "UTF8");
  if (blocking_timeout) {
    // libpq rounds 1 up to 2 seconds itself; say so explicitly.
    const auto seconds = std::max<long long>(2, (o.connect_timeout.count() + 999) / 1000);
    add("connect_timeout", std::to_string(seconds));
  }
  for (std::size_t i = 0; i < keys_.size(); ++i) {
    keyword_ptrs_.push_back(keys_[i].c_str());
    value_ptrs_.push_back(values_[i].c_str());
  }
  keyword_ptrs_.push_back(nullptr);
  value_ptrs_.push_back(nullptr);
}

void ConnParams::add(std::string key, std::string value) {
  // A later value wins (libpq_params may repeat a keyword on purpose).
  for (std::size_t i = 0; i < keys_.size(); ++i) {
    if (keys_[i] == key) {
      values_[i] = std::move(value);
      return;
    }
  }
  keys_.push_back(std::move(key));
  values_.push_back(std::move(value));
}

std::string describe_target(const PostgresStoreOptions& o) {
  std::string out = o.user.empty() ? std::string("(default user)") : o.user;
  out += '@';
  out += o.host.empty() ? std::string("(default host)") : o.host;
  if (!o.port.empty()) out += ":" + o.port;
  out += '/';
  out += o.dbname.empty() ? std::string("(default database)") : o.dbname;
  out += " schema " + o.schema;
  return out;
}

void quiet(PGconn* conn) noexcept {
  if (conn != nullptr)
    PQsetNoticeProcessor(
        conn, [](void*, const char*) {}, nullptr);
}

std::string trim_message(const char* message) {
  std::string m = message == nullptr ? std::string() : std::string(message);
  while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
  for (std::string_view prefix : {"ERROR:  ", "FATAL:  "}) {
    if (m.starts_with(prefix)) m.erase(0, prefix.size());
  }
  // libpq's multi-line details become one line for logs.
  std::replace(m.begin(), m.end(), '\n', ' ');
  return m;
}

std::string sqlstate_of(const PGresult* result) {
  if (result == nullptr) return {};
  const char* state = PQresultErrorField(result, PG_DIAG_SQLSTATE);
  return state == nullptr ? std::string() : std::string(state);
}

Error connection_error(const PGconn* conn, std::string_view what, std::string_view target) {
  std::string msg = "postgresql: ";
  msg.append(what);
  msg += " (";
  msg.append(target);
  msg += "): ";
  const std::string detail = trim_message(conn == nullptr ? "out of memory" : PQerrorMessage(conn));
  msg += detail.empty() ? std::string("the connection is closed") : detail;
  msg +=
      " (the server is unreachable or refused the connection; check the URL, credentials and pg_hba.conf, retry later)";
  return Error(ErrorCode::kUnavailable, std::move(msg));
}

Error result_error(const PGresult* result, const PGconn* conn, std::string_view what, std::string_view target,
                   SqlOrigin origin) {
  const std::string state = sqlstate_of(result);
  if (state.empty()) {
    // No SQLSTATE: libpq itself failed (lost connection, out of memory).
    if (conn == nullptr || PQstatus(conn) == CONNECTION_BAD || result == nullptr) {
      return connection_error(conn, what, target);
    }
  }
  std::string detail = trim_message(result != nullptr ? PQresultErrorMessage(result)
                                    : conn != nullptr ? PQerrorMessage(conn)
                                                      : "");
  ErrorCode code = ErrorCode::kInternal;
  const char* advice = "this is a bug in Idem or an unexpected server; please report it";
  const std::string_view cls = std::string_view(state).substr(0, std::min<std::size_t>(2, state.size()));
  if (cls == "08" || state == "57P01" || state == "57P02" || state == "57P03" || cls == "53" || state == "58030") {
    code = ErrorCode::kUnavailable;
    advice = "the server is shutting down, starting, out of resources or unreachable; retry later";
  } else if (cls == "40" || state == "55P03" || state == "57014") {
    code = ErrorCode::kTimeout;
    advice = "a serialization failure, deadlock, lock or statement timeout; retry";
  } else if (state == "25P02") {
    code = ErrorCode::kInvalidConfiguration;
    advice = "an earlier statement of this transaction failed; only rollback is possible";
  } else if (cls == "22" || cls == "23") {
    code = ErrorCode::kInvalidArgument;
    advice = origin == SqlOrigin::kStore ? "a key or value is not acceptable to PostgreSQL (keys must be valid UTF-8)"
                                         : "fix the statement or its parameters";
  } else if (state == "42501") {
    code = ErrorCode::kInvalidConfiguration;
    advice = origin == SqlOrigin::kStore
                 ? "the store's role lacks a privilege; grant what docs/postgres.md lists (USAGE on the schema, "
                   "SELECT, INSERT, UPDATE, DELETE on its tables, USAGE on its sequence)"
                 : "the role lacks a privilege on what the statement touches; grant it";
  } else if (state == "42P01" || state == "3F000" || state == "26000" || state == "42883") {
    code = ErrorCode::kInvalidConfiguration;
    advice = origin == SqlOrigin::kStore
                 ? "the store's schema or tables are missing (dropped after the store opened?); reopen the store to "
                   "recreate them"
                 : "fix the statement: it names something that does not exist";
  } else if (cls == "42" && origin == SqlOrigin::kUser) {
    code = ErrorCode::kInvalidConfiguration;
    advice = "fix the statement";
  } else if (cls == "P0" && origin == SqlOrigin::kUser) {
    code = ErrorCode::kInvalidConfiguration;
    advice = "raised by a function or trigger of yours";
  }
  std::string msg = "postgresql: ";
  msg.append(what);
  msg += " (";
  msg.append(target);
  msg += ") failed";
  if (!state.empty()) msg += " [SQLSTATE " + state + "]";
  msg += ": " + detail + " (" + advice + ")";
  return Error(code, std::move(msg));
}

}  // namespace idem::pg
