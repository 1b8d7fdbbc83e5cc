// The operator's kit against a real Prometheus: `idem bench` and the
// `idem stats` exporter serve /metrics, a Prometheus server (started here,
// on a free loopback port, with a generated configuration that also loads
// ops/prometheus/alerts.yml) scrapes them, and its HTTP API shows that the
// series arrived with the right values. Then every query of the Grafana
// dashboard (ops/grafana/idem.json) and every alert rule is checked against
// what Prometheus really ingested: each metric it names must exist, and each
// dashboard query must run and return data.
#include <gtest/gtest.h>
#include <httplib.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "idem/core/checker.h"
#include "support/server_process.h"

namespace idem::test {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

// --- Metric names in a PromQL expression ------------------------------------

bool ident_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':'; }
bool ident_char(char c) { return ident_start(c) || (c >= '0' && c <= '9'); }

// Skips from `i` (at an opening bracket) past its matching closing bracket,
// stepping over quoted strings.
std::size_t skip_group(std::string_view e, std::size_t i, char open, char close) {
  int depth = 0;
  for (; i < e.size(); ++i) {
    const char c = e[i];
    if (c == '"' || c == '\'' || c == '`') {
      const char quote = c;
      for (++i; i < e.size() && e[i] != quote; ++i) {
        if (e[i] == '\\' && quote != '`') ++i;
      }
    } else if (c == open) {
      ++depth;
    } else if (c == close && --depth == 0) {
      return i + 1;
    }
  }
  return e.size();
}

// promql_metric_names() returns the metric names an expression selects:
// identifiers that are not functions or aggregations (followed by '('),
// keywords, label lists (by/without/on/ignoring/group_*), label matchers,
// ranges, strings, numbers and durations, or Grafana variables ($x, ${x}).
std::set<std::string> promql_metric_names(std::string_view e) {
  static const std::set<std::string, std::less<>> kKeywords = {"and", "or",  "unless", "bool", "offset",
                                                               "inf", "nan", "atan2",  "Inf",  "NaN"};
  static const std::set<std::string, std::less<>> kLabelLists = {"by",       "without",    "on",
                                                                 "ignoring", "group_left", "group_right"};
  std::set<std::string> names;
  std::size_t i = 0;
  while (i < e.size()) {
    const char c = e[i];
    if (c == '"' || c == '\'' || c == '`') {
      i = skip_group(e, i, c, c);  // open == close: ends at the closing quote
      if (i < e.size()) continue;
      break;
    }
    if (c == '{') {
      i = skip_group(e, i, '{', '}');
    } else if (c == '[') {
      i = skip_group(e, i, '[', ']');
    } else if (c == '$') {
      ++i;
      if (i < e.size() && e[i] == '{') {
        i = skip_group(e, i, '{', '}');
      } else {
        while (i < e.size() && ident_char(e[i])) ++i;
      }
    } else if ((c >= '0' && c <= '9') || (c == '.' && i + 1 < e.size() && e[i + 1] >= '0' && e[i + 1] <= '9')) {
      // Numbers (1e3, 0x1f, .5) and durations (1h30m) in one sweep.
      while (i < e.size() && (ident_char(e[i]) || e[i] == '.')) ++i;
    } else if (ident_start(c)) {
      const std::size_t start = i;
      while (i < e.size() && ident_char(e[i])) ++i;
      const std::string word(e.substr(start, i - start));
      auto skip_space = [&](std::size_t at) {
        while (at < e.size() && (e[at] == ' ' || e[at] == '\n' || e[at] == '\t')) ++at;
        return at;
      };
      std::size_t next = skip_space(i);
      // An aggregation may carry its label list before its argument:
      // `sum by (job) (x)`, `max without(le) (x)`.
      for (const std::string_view modifier : {"by", "without"}) {
        if (e.substr(next, modifier.size()) == modifier && next + modifier.size() < e.size() &&
            !ident_char(e[next + modifier.size()])) {
          const std::size_t list = skip_space(next + modifier.size());
          if (list < e.size() && e[list] == '(') next = skip_space(skip_group(e, list, '(', ')'));
        }
      }
      const bool call = next < e.size() && e[next] == '(';
      if (kLabelLists.count(word) != 0) {
        if (call) i = skip_group(e, next, '(', ')');
      } else if (!call && kKeywords.count(word) == 0) {
        names.insert(word);
      }
    } else {
      ++i;
    }
  }
  return names;
}

TEST(PromqlMetricNames, FindsSelectorsAndNothingElse) {
  using Names = std::set<std::string>;
  EXPECT_EQ(promql_metric_names("up"), Names{"up"});
  EXPECT_EQ(promql_metric_names(R"q(sum by (job, le) (rate(a_total{x="y(z)", w=~"$job"}[$__rate_interval])))q"),
            Names{"a_total"});
  EXPECT_EQ(promql_metric_names("histogram_quantile(0.99, sum(rate(h_bucket[5m])) by (le)) > 1e-3"), Names{"h_bucket"});
  EXPECT_EQ(promql_metric_names("a / on (job) group_left (scope) b and c offset 1h30m unless bool d"),
            (Names{"a", "b", "c", "d"}));
  EXPECT_EQ(promql_metric_names(R"q(label_replace(x, "dst", "$1", "src", "(.*)") or vector(0))q"), Names{"x"});
  EXPECT_EQ(promql_metric_names("time() - max by (store) (job:ratio:rate10m{store=~\"${store}\"}) > .5"),
            Names{"job:ratio:rate10m"});
  EXPECT_EQ(promql_metric_names("sum(\n  rate(n_total[1m])\n)"), Names{"n_total"});
}

// --- Files of the kit -----------------------------------------------------------

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct DashboardQuery {
  std::string where;  // "panel 'Claims by outcome' target A", for messages
  std::string expr;
};

// Every PromQL expression of the dashboard's panels (rows included).
std::vector<DashboardQuery> dashboard_queries(const json& dashboard) {
  std::vector<DashboardQuery> out;
  std::function<void(const json&)> walk = [&](const json& panels) {
    for (const json& panel : panels) {
      for (const json& target : panel.value("targets", json::array())) {
        out.push_back({"panel '" + panel.value("title", "?") + "' target " + target.value("refId", "?"),
                       target.value("expr", "")});
      }
      if (panel.contains("panels")) walk(panel["panels"]);
    }
  };
  walk(dashboard.at("panels"));
  return out;
}

// Grafana's variables as Prometheus would see them: "All" is the regex .*,
// the rate interval a duration that spans a few scrapes.
std::string substitute_grafana_variables(std::string expr) {
  const std::vector<std::pair<std::string, std::string>> replacements = {
      {"$__rate_interval", "1m"}, {"$__interval", "15s"}, {"$__range", "1h"}, {"${job}", ".*"}, {"${scope}", ".*"},
      {"${store}", ".*"},         {"$job", ".*"},         {"$scope", ".*"},   {"$store", ".*"}};
  for (const auto& [from, to] : replacements) {
    for (std::size_t pos = expr.find(from); pos != std::string::npos; pos = expr.find(from, pos + to.size())) {
      expr.replace(pos, from.size(), to);
    }
  }
  return expr;
}

json load_dashboard() {
  const std::string text = read_file(std::string(IDEM_OPS_DIR) + "/grafana/idem.json");
  return json::parse(text);  // throws, and fails the test, on invalid JSON
}

TEST(GrafanaDashboard, IsAnImportableDashboardOfIdemQueries) {
  const json d = load_dashboard();
  EXPECT_EQ(d.at("uid"), "idem-overview");
  EXPECT_FALSE(d.at("title").get<std::string>().empty());
  ASSERT_TRUE(d.at("panels").is_array());
  // The data source is a variable, so the dashboard imports into any Grafana
  // whatever its Prometheus data source is called.
  bool has_datasource_variable = false;
  for (const json& v : d.at("templating").at("list")) {
    if (v.at("type") == "datasource" && v.at("query") == "prometheus") has_datasource_variable = true;
  }
  EXPECT_TRUE(has_datasource_variable);
  std::set<int> ids;
  std::set<std::string> titles;
  for (const json& panel : d.at("panels")) {
    EXPECT_TRUE(ids.insert(panel.at("id").get<int>()).second) << "duplicate panel id " << panel.at("id");
    const json& pos = panel.at("gridPos");
    EXPECT_LE(pos.at("x").get<int>() + pos.at("w").get<int>(), 24) << panel.at("title");
    titles.insert(panel.at("title").get<std::string>());
    if (panel.at("type") == "row") continue;
    EXPECT_EQ(panel.at("datasource").at("uid"), "${datasource}") << panel.at("title");
    ASSERT_FALSE(panel.at("targets").empty()) << panel.at("title");
  }
  // What the issue asks the dashboard to show.
  for (const char* wanted : {"Claims by outcome", "Duplicate ratio by scope", "Claim latency", "In flight",
                             "Takeovers and lease lost", "Circuit breaker"}) {
    EXPECT_EQ(titles.count(wanted), 1u) << wanted;
  }
  const auto queries = dashboard_queries(d);
  ASSERT_GE(queries.size(), 20u);
  for (const DashboardQuery& q : queries) {
    const auto names = promql_metric_names(q.expr);
    EXPECT_FALSE(names.empty()) << q.where << ": no metric in " << q.expr;
    for (const std::string& name : names) {
      EXPECT_EQ(name.rfind("idem_", 0), 0u) << q.where << " selects '" << name << "', not an Idem metric";
    }
  }
}

// --- The real Prometheus ------------------------------------------------------------

// Prometheus's HTTP API: GET with query parameters, JSON answers.
class PrometheusApi {
 public:
  explicit PrometheusApi(int port) : client_("127.0.0.1", port) {
    client_.set_connection_timeout(2, 0);
    client_.set_read_timeout(10, 0);
  }

  // The "data" member of a successful answer; null (and a message) otherwise.
  json get(const std::string& path, const httplib::Params& params, std::string* error) {
    auto response = client_.Get(path, params, httplib::Headers{});
    if (!response) {
      *error = path + ": " + httplib::to_string(response.error());
      return nullptr;
    }
    json body = json::parse(response->body, nullptr, false);
    if (body.is_discarded() || body.value("status", "") != "success") {
      *error = path + " answered " + std::to_string(response->status) + ": " + response->body;
      return nullptr;
    }
    return body["data"];
  }

  // An instant query's result vector; null on error.
  json query(const std::string& promql, std::string* error) {
    json data = get("/api/v1/query", {{"query", promql}}, error);
    if (data.is_null()) return nullptr;
    return data.at("result");
  }

  // The single value of a query (NaN when absent or an error).
  double scalar(const std::string& promql) {
    std::string error;
    const json result = query(promql, &error);
    if (!result.is_array() || result.size() != 1) return std::nan("");
    return std::stod(result[0].at("value").at(1).get<std::string>());
  }

  bool ready() {
    auto response = client_.Get("/-/ready");
    return response && response->status == 200;
  }

 private:
  httplib::Client client_;
};

// Polls `condition` every 200 ms until it holds or `timeout` passes.
bool eventually(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(200ms);
  }
  return condition();
}

TEST(Prometheus, ScrapesIdemAndKnowsEveryMetricTheKitUses) {
  const std::string prometheus = find_binary("prometheus", "IDEM_PROMETHEUS");
  if (prometheus.empty()) IDEM_SKIP_OR_FAIL("prometheus not found (Debian package prometheus)");
  TempDir dir("prometheus");
  const std::string store_url = "sqlite://" + dir.file("idem.db");
  constexpr int kEvents = 3000;

  // A PROCESSING record whose worker "died": claimed with a short lease and
  // never finished. The exporter must report it as stuck.
  {
    auto checker = IdempotencyChecker::from_url(store_url, {.lease = 50ms});
    ASSERT_TRUE(checker) << checker.error().to_string();
    Envelope dead;
    dead.event_id = "worker-died-here";
    auto claim = (*checker)->claim(dead);
    ASSERT_TRUE(claim && claim->outcome.acquired());
  }
  std::this_thread::sleep_for(100ms);

  std::string error;
  auto spec = [&](std::string binary, std::vector<std::string> args, int port, std::string name) {
    ServerSpec made;
    made.binary = std::move(binary);
    made.args = std::move(args);
    made.work_dir = dir.path();
    made.port = port;
    made.name = std::move(name);
    return made;
  };
  const int bench_port = free_port();
  auto bench =
      ServerProcess::start(spec(IDEM_CLI_PATH,
                                {"bench", "--store", store_url, "--events", std::to_string(kEvents), "--concurrency",
                                 "4", "--keep", "--metrics-listen", "127.0.0.1:" + std::to_string(bench_port),
                                 "--metrics-linger", "5m", "--snapshot-interval", "1s"},
                                bench_port, "idem-bench"),
                           &error);
  ASSERT_TRUE(bench) << error;
  const int exporter_port = free_port();
  auto exporter = ServerProcess::start(spec(IDEM_CLI_PATH,
                                            {"stats", "--store", store_url, "--metrics-listen",
                                             "127.0.0.1:" + std::to_string(exporter_port), "--interval", "1s"},
                                            exporter_port, "idem-exporter"),
                                       &error);
  ASSERT_TRUE(exporter) << error;

  const int prometheus_port = free_port();
  {
    std::ofstream config(dir.file("prometheus.yml"));
    config << "global:\n"
              "  scrape_interval: 1s\n"
              "  scrape_timeout: 900ms\n"
              "  evaluation_interval: 1s\n"
              "rule_files:\n"
              "  - "
           << IDEM_OPS_DIR << "/prometheus/alerts.yml\n"
           << "scrape_configs:\n"
              "  - job_name: idem-bench\n"
              "    static_configs: [{targets: ['127.0.0.1:"
           << bench_port
           << "']}]\n"
              "  - job_name: idem-exporter\n"
              "    static_configs: [{targets: ['127.0.0.1:"
           << exporter_port << "']}]\n";
  }
  PrometheusApi api(prometheus_port);
  ServerSpec prometheus_spec =
      spec(prometheus,
           {"--config.file=" + dir.file("prometheus.yml"), "--storage.tsdb.path=" + dir.file("data"),
            "--web.listen-address=127.0.0.1:" + std::to_string(prometheus_port), "--log.level=warn"},
           0, "prometheus");
  prometheus_spec.ready = [&] { return api.ready(); };
  prometheus_spec.start_timeout = 60s;
  auto server = ServerProcess::start(prometheus_spec, &error);
  ASSERT_TRUE(server) << error;

  // The series arrive, with the values the run produced.
  ASSERT_TRUE(eventually([&] { return api.scalar(R"(sum(idem_claims_total{job="idem-bench"}))") == kEvents; }, 60s))
      << "Prometheus never saw the bench's " << kEvents << " claims; last value "
      << api.scalar(R"(sum(idem_claims_total{job="idem-bench"}))") << "\n"
      << server->log_tail() << bench->log_tail();
  EXPECT_EQ(api.scalar(R"(up{job="idem-bench"})"), 1);
  EXPECT_TRUE(eventually([&] { return api.scalar(R"(up{job="idem-exporter"})") == 1; }, 30s)) << exporter->log_tail();
  const double acquired = api.scalar(R"(sum(idem_new_total{job="idem-bench"}))");
  EXPECT_GT(acquired, 0);
  EXPECT_EQ(api.scalar(R"(sum(idem_completions_total{job="idem-bench"}))"), acquired);
  EXPECT_EQ(acquired + api.scalar(R"(sum(idem_duplicates_total{job="idem-bench"}))"), kEvents);
  EXPECT_EQ(api.scalar(R"(sum(idem_store_call_duration_seconds_count{job="idem-bench",op="claim"}))"), kEvents);
  EXPECT_EQ(api.scalar(R"(idem_circuit_breaker_state{job="idem-bench"})"), 0);
  // The exporter sees the bench's records (kept with --keep) and the stuck one.
  EXPECT_TRUE(eventually(
      [&] { return api.scalar(R"(idem_records{job="idem-exporter",status="completed"})") == acquired; }, 30s))
      << api.scalar(R"(idem_records{job="idem-exporter",status="completed"})") << " != " << acquired;
  EXPECT_TRUE(eventually(
      [&] { return api.scalar(R"(idem_processing_lease_expired_records{job="idem-exporter"})") == 1; }, 30s));
  EXPECT_GT(api.scalar(R"(idem_processing_lease_expired_max_seconds{job="idem-exporter"})"), 0);

  // Everything the kit names exists in what Prometheus ingested.
  const json name_values = api.get("/api/v1/label/__name__/values", {}, &error);
  ASSERT_TRUE(name_values.is_array()) << error;
  std::set<std::string> ingested;
  for (const json& name : name_values) ingested.insert(name.get<std::string>());

  const json dashboard = load_dashboard();
  const auto queries = dashboard_queries(dashboard);
  for (const DashboardQuery& q : queries) {
    for (const std::string& name : promql_metric_names(q.expr)) {
      EXPECT_EQ(ingested.count(name), 1u) << q.where << " names '" << name << "', which Idem does not export";
    }
  }
  // Every query runs and returns data: each panel has something to draw.
  // rate() needs two scrapes in its window, so the last ones may need a
  // moment.
  std::vector<std::string> empty;
  eventually(
      [&] {
        empty.clear();
        for (const DashboardQuery& q : queries) {
          const std::string promql = substitute_grafana_variables(q.expr);
          const json result = api.query(promql, &error);
          if (!result.is_array()) {
            ADD_FAILURE() << q.where << " does not run: " << error;
            return true;
          }
          if (result.empty()) empty.push_back(q.where + ": " + promql);
        }
        return empty.empty();
      },
      30s);
  for (const std::string& where : empty) ADD_FAILURE() << "returned nothing: " << where;
  for (const json& variable : dashboard.at("templating").at("list")) {
    if (variable.at("type") != "query") continue;
    // label_values(<selector>, <label>)
    const std::string query = variable.at("query").at("query");
    const std::size_t open = query.find('(');
    const std::size_t comma = query.rfind(',');
    ASSERT_TRUE(query.rfind("label_values(", 0) == 0 && comma != std::string::npos) << query;
    const std::string selector = substitute_grafana_variables(query.substr(open + 1, comma - open - 1));
    std::string label = query.substr(comma + 1, query.size() - comma - 2);
    label.erase(0, label.find_first_not_of(' '));
    for (const std::string& name : promql_metric_names(selector)) {
      EXPECT_EQ(ingested.count(name), 1u) << "variable " << variable.at("name") << " names '" << name << "'";
    }
    const json values = api.get("/api/v1/label/" + label + "/values", {{"match[]", selector}}, &error);
    ASSERT_TRUE(values.is_array()) << error;
    EXPECT_FALSE(values.empty()) << "variable " << variable.at("name") << " has no values";
  }

  // The alert rules loaded, evaluate without error, and name real metrics.
  json groups;
  ASSERT_TRUE(eventually(
      [&] {
        groups = api.get("/api/v1/rules", {}, &error).value("groups", json::array());
        bool all_evaluated = !groups.empty();
        for (const json& group : groups) {
          for (const json& rule : group.at("rules")) all_evaluated = all_evaluated && rule.at("health") == "ok";
        }
        return all_evaluated;
      },
      30s))
      << groups.dump(2) << error;
  std::set<std::string> recorded;
  std::size_t alerts = 0;
  for (const json& group : groups) {
    for (const json& rule : group.at("rules")) {
      if (rule.at("type") == "recording") recorded.insert(rule.at("name").get<std::string>());
      if (rule.at("type") == "alerting") ++alerts;
    }
  }
  EXPECT_GE(alerts, 5u);
  for (const json& group : groups) {
    for (const json& rule : group.at("rules")) {
      for (const std::string& name : promql_metric_names(rule.at("query").get<std::string>())) {
        EXPECT_TRUE(ingested.count(name) == 1 || recorded.count(name) == 1)
            << "rule " << rule.at("name") << " names '" << name << "', which Idem does not export";
      }
    }
  }

  bench->stop();
  exporter->stop();
  server->stop();
}

}  // namespace
}  // namespace idem::test
