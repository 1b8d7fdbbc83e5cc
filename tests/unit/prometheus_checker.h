// File: tests/unit/prometheus_checker.h
//
// A strict checker of the Prometheus text exposition format 0.0.4, written
// from the format's published rules (prometheus.io, "Exposition formats"),
// plus the naming conventions we hold ourselves to:
//
//   * lines end with '\n', including the last one; blank lines are ignored;
//   * "# HELP name doc" and "# TYPE name type" at most once per name; TYPE
//     before the first sample of its family; type is one of counter, gauge,
//     histogram, summary, untyped; other '#' lines are comments;
//   * sample: name [{label="value",...[,]}] value [timestamp];
//     name matches [a-zA-Z_:][a-zA-Z0-9_:]*, label names
//     [a-zA-Z_][a-zA-Z0-9_]* and not starting with "__", no label twice;
//     label values escape only \\, \" and \n; value parses as a Go float
//     (incl. NaN, +Inf, -Inf); timestamp is an integer;
//   * all lines of a family form one group; a series (name + label set)
//     appears once;
//   * histograms: samples are name_bucket (with le), name_sum, name_count;
//     every series has a le="+Inf" bucket equal to its _count, buckets in
//     increasing le order with non-decreasing counts, and a _sum;
//   * ours: counters are named *_total and are finite and >= 0.
//
// Returns every violation found (empty: valid) and the parsed samples, keyed
// by name and the label set as written, for exact assertions in tests.
#pragma once

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace idem::testing {

struct PromSample {
  std::string name;
  std::vector<std::pair<std::string, std::string>> labels;  // unescaped, in order
  double value = 0;
};

struct PromCheck {
  std::vector<std::string> errors;
  std::vector<PromSample> samples;
  std::map<std::string, std::string> types;  // family -> type

  bool ok() const { return errors.empty(); }
  // The value of the series `name` whose labels are exactly `labels` (any
  // order); nullopt when absent.
  std::optional<double> value(std::string_view name,
                              std::vector<std::pair<std::string, std::string>> labels = {}) const {
    std::sort(labels.begin(), labels.end());
    for (const PromSample& s : samples) {
      if (s.name != name) continue;
      auto sorted = s.labels;
      std::sort(sorted.begin(), sorted.end());
      if (sorted == labels) return s.value;
    }
    return std::nullopt;
  }
  std::string describe() const {
    std::string out;
    for (const auto& e : errors) out += e + "\n";
    return out;
  }
};

namespace prom_detail {

inline bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':'; }
inline bool is_name_char(char c) { return is_name_start(c) || (c >= '0' && c <= '9'); }
inline bool is_label_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
inline bool is_label_char(char c) { return is_label_start(c) || (c >= '0' && c <= '9'); }
inline bool is_blank(char c) { return c == ' ' || c == '\t'; }

inline bool valid_metric_name(std::string_view s) {
  if (s.empty() || !is_name_start(s[0])) return false;
  for (char c : s) {
    if (!is_name_char(c)) return false;
  }
  return true;
}

// Go's strconv.ParseFloat accepts decimal floats, "Inf"/"Infinity" and "NaN"
// in any case, with an optional sign. (Hex floats and underscores too, which
// no exposition writer emits; we reject them to stay strict.)
inline std::optional<double> parse_go_float(std::string_view s) {
  std::string t(s);
  std::string lower;
  for (char c : t) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  std::string_view body = lower;
  bool negative = false;
  if (!body.empty() && (body[0] == '+' || body[0] == '-')) {
    negative = body[0] == '-';
    body.remove_prefix(1);
  }
  if (body == "inf" || body == "infinity") return negative ? -HUGE_VAL : HUGE_VAL;
  if (body == "nan") return std::nan("");
  // [digits][.digits][e[+-]digits], at least one digit in the mantissa.
  std::size_t i = 0;
  std::size_t mantissa_digits = 0;
  while (i < body.size() && std::isdigit(static_cast<unsigned char>(body[i]))) ++i, ++mantissa_digits;
  if (i < body.size() && body[i] == '.') {
    ++i;
    while (i < body.size() && std::isdigit(static_cast<unsigned char>(body[i]))) ++i, ++mantissa_digits;
  }
  if (mantissa_digits == 0) return std::nullopt;
  if (i < body.size() && body[i] == 'e') {
    ++i;
    if (i < body.size() && (body[i] == '+' || body[i] == '-')) ++i;
    std::size_t exp_digits = 0;
    while (i < body.size() && std::isdigit(static_cast<unsigned char>(body[i]))) ++i, ++exp_digits;
    if (exp_digits == 0) return std::nullopt;
  }
  if (i != body.size()) return std::nullopt;
  return std::strtod(t.c_str(), nullptr);
}

inline std::string series_key(const PromSample& s) {
  auto labels = s.labels;
  std::sort(labels.begin(), labels.end());
  std::string key = s.name + "{";
  for (const auto& [n, v] : labels) key += n + "=\"" + v + "\",";
  return key + "}";
}

// Histogram series identity: the labels without le.
inline std::string without_le(const PromSample& s) {
  std::vector<std::pair<std::string, std::string>> labels;
  for (const auto& l : s.labels) {
    if (l.first != "le") labels.push_back(l);
  }
  std::sort(labels.begin(), labels.end());
  std::string key;
  for (const auto& [n, v] : labels) key += n + "=\"" + v + "\",";
  return key;
}

}  // namespace prom_detail

inline PromCheck check_prometheus_text(std::string_view text) {
  using namespace prom_detail;
  PromCheck result;
  auto error = [&](std::size_t line_no, const std::string& message) {
    result.errors.push_back("line " + std::to_string(line_no) + ": " + message);
  };
  if (!text.empty() && text.back() != '\n') result.errors.push_back("the last line does not end with a line feed");

  std::set<std::string> help_seen;
  std::set<std::string> finished_families;  // groups that were left
  std::string current_family;
  std::set<std::string> series_seen;
  std::map<std::string, std::size_t> family_first_sample;  // family -> line of first sample

  // The family a sample belongs to: a histogram's _bucket/_sum/_count map to
  // the TYPE'd base name; otherwise the sample name itself.
  auto family_of = [&](const std::string& name) -> std::string {
    for (std::string_view suffix : {"_bucket", "_sum", "_count"}) {
      if (name.size() > suffix.size() && name.ends_with(suffix)) {
        std::string base = name.substr(0, name.size() - suffix.size());
        auto it = result.types.find(base);
        if (it != result.types.end() && (it->second == "histogram" || it->second == "summary")) return base;
      }
    }
    return name;
  };
  auto enter_family = [&](std::size_t line_no, const std::string& family) {
    if (family == current_family) return;
    if (finished_families.count(family) != 0) {
      error(line_no, "lines of metric family '" + family + "' are not one group");
    }
    if (!current_family.empty()) finished_families.insert(current_family);
    current_family = family;
  };

  std::size_t line_no = 0;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    while (!line.empty() && is_blank(line.front())) line.remove_prefix(1);
    while (!line.empty() && is_blank(line.back())) line.remove_suffix(1);
    if (line.empty()) continue;

    if (line.front() == '#') {
      std::string_view rest = line.substr(1);
      while (!rest.empty() && is_blank(rest.front())) rest.remove_prefix(1);
      auto take_token = [](std::string_view& s) {
        std::size_t i = 0;
        while (i < s.size() && !is_blank(s[i])) ++i;
        std::string_view token = s.substr(0, i);
        s.remove_prefix(i);
        while (!s.empty() && is_blank(s.front())) s.remove_prefix(1);
        return token;
      };
      const std::string_view keyword = take_token(rest);
      if (keyword != "HELP" && keyword != "TYPE") continue;  // a comment
      const std::string name(take_token(rest));
      if (!valid_metric_name(name)) {
        error(line_no, "invalid metric name '" + name + "' in " + std::string(keyword));
        continue;
      }
      if (keyword == "HELP") {
        if (!help_seen.insert(name).second) error(line_no, "second HELP for '" + name + "'");
        for (std::size_t i = 0; i < rest.size(); ++i) {
          if (rest[i] == '\\') {
            if (i + 1 >= rest.size() || (rest[i + 1] != '\\' && rest[i + 1] != 'n')) {
              error(line_no, "invalid escape in HELP docstring of '" + name + "'");
            }
            ++i;
          }
        }
        enter_family(line_no, name);
      } else {
        const std::string type(take_token(rest));
        if (!rest.empty()) error(line_no, "trailing text after TYPE of '" + name + "'");
        if (type != "counter" && type != "gauge" && type != "histogram" && type != "summary" && type != "untyped") {
          error(line_no, "unknown type '" + type + "' for '" + name + "'");
        }
        if (result.types.count(name) != 0) error(line_no, "second TYPE for '" + name + "'");
        if (family_first_sample.count(name) != 0) error(line_no, "TYPE of '" + name + "' after its first sample");
        result.types[name] = type;
        if (type == "counter" && !name.ends_with("_total")) {
          error(line_no, "counter '" + name + "' does not end in _total");
        }
        enter_family(line_no, name);
      }
      continue;
    }

    // A sample line.
    PromSample sample;
    std::size_t i = 0;
    while (i < line.size() && is_name_char(line[i])) ++i;
    sample.name = std::string(line.substr(0, i));
    if (!valid_metric_name(sample.name)) {
      error(line_no, "invalid metric name in sample '" + std::string(line) + "'");
      continue;
    }
    bool bad = false;
    const std::size_t name_end = i;
    while (i < line.size() && is_blank(line[i])) ++i;
    if (i >= line.size() || line[i] != '{') i = name_end;
    if (i < line.size() && line[i] == '{') {
      ++i;
      std::set<std::string> names;
      while (true) {
        while (i < line.size() && is_blank(line[i])) ++i;
        if (i < line.size() && line[i] == '}') {
          ++i;
          break;
        }
        std::size_t start = i;
        if (i >= line.size() || !is_label_start(line[i])) {
          error(line_no, "invalid label name in '" + std::string(line) + "'");
          bad = true;
          break;
        }
        while (i < line.size() && is_label_char(line[i])) ++i;
        std::string label(line.substr(start, i - start));
        if (label.starts_with("__")) error(line_no, "reserved label name '" + label + "'");
        if (!names.insert(label).second) error(line_no, "label '" + label + "' given twice");
        while (i < line.size() && is_blank(line[i])) ++i;
        if (i >= line.size() || line[i] != '=') {
          error(line_no, "expected '=' after label '" + label + "'");
          bad = true;
          break;
        }
        ++i;
        while (i < line.size() && is_blank(line[i])) ++i;
        if (i >= line.size() || line[i] != '"') {
          error(line_no, "label value of '" + label + "' is not quoted");
          bad = true;
          break;
        }
        ++i;
        std::string value;
        bool closed = false;
        while (i < line.size()) {
          const char c = line[i++];
          if (c == '"') {
            closed = true;
            break;
          }
          if (c == '\\') {
            if (i >= line.size()) break;
            const char e = line[i++];
            if (e == '\\') {
              value += '\\';
            } else if (e == '"') {
              value += '"';
            } else if (e == 'n') {
              value += '\n';
            } else {
              error(line_no, std::string("invalid escape \\") + e + " in label '" + label + "'");
              bad = true;
            }
          } else {
            value += c;
          }
        }
        if (!closed) {
          error(line_no, "unterminated label value of '" + label + "'");
          bad = true;
          break;
        }
        sample.labels.emplace_back(label, value);
        while (i < line.size() && is_blank(line[i])) ++i;
        if (i < line.size() && line[i] == ',') {
          ++i;
          continue;
        }
        if (i < line.size() && line[i] == '}') {
          ++i;
          break;
        }
        error(line_no, "expected ',' or '}' in label set");
        bad = true;
        break;
      }
    }
    if (bad) continue;
    if (i < line.size() && !is_blank(line[i])) {
      error(line_no, "no blank between series and value in '" + std::string(line) + "'");
      continue;
    }
    while (i < line.size() && is_blank(line[i])) ++i;
    std::size_t value_start = i;
    while (i < line.size() && !is_blank(line[i])) ++i;
    auto value = parse_go_float(line.substr(value_start, i - value_start));
    if (!value) {
      error(line_no, "invalid value '" + std::string(line.substr(value_start, i - value_start)) + "'");
      continue;
    }
    sample.value = *value;
    while (i < line.size() && is_blank(line[i])) ++i;
    if (i < line.size()) {
      std::string_view ts = line.substr(i);
      std::size_t j = (ts[0] == '-' || ts[0] == '+') ? 1 : 0;
      bool digits = j < ts.size();
      for (; j < ts.size(); ++j) digits = digits && std::isdigit(static_cast<unsigned char>(ts[j])) != 0;
      if (!digits) error(line_no, "invalid timestamp '" + std::string(ts) + "'");
    }

    const std::string family = family_of(sample.name);
    enter_family(line_no, family);
    family_first_sample.emplace(family, line_no);
    if (!series_seen.insert(series_key(sample)).second) {
      error(line_no, "duplicate series " + series_key(sample));
    }
    const auto type_it = result.types.find(family);
    const std::string type = type_it == result.types.end() ? "untyped" : type_it->second;
    const bool has_le =
        std::any_of(sample.labels.begin(), sample.labels.end(), [](const auto& l) { return l.first == "le"; });
    if (type == "counter") {
      if (!std::isfinite(sample.value) || sample.value < 0) {
        error(line_no, "counter '" + sample.name + "' has a negative or non-finite value");
      }
    } else if (type == "histogram") {
      if (sample.name == family + "_bucket") {
        if (!has_le) error(line_no, "histogram bucket without le");
      } else if (sample.name == family + "_sum" || sample.name == family + "_count") {
        if (has_le) error(line_no, "le label on " + sample.name);
      } else {
        error(line_no, "histogram '" + family + "' has a sample '" + sample.name + "'");
      }
    }
    if (has_le && type != "histogram") error(line_no, "le label outside a histogram bucket");
    result.samples.push_back(std::move(sample));
  }

  // Histogram series rules, over all samples.
  for (const auto& [family, type] : result.types) {
    if (type != "histogram") continue;
    struct Series {
      std::vector<std::pair<double, double>> buckets;  // le, count, in order of appearance
      std::optional<double> sum;
      std::optional<double> count;
    };
    std::map<std::string, Series> series;
    for (const PromSample& s : result.samples) {
      if (s.name == family + "_bucket") {
        std::string le;
        for (const auto& l : s.labels) {
          if (l.first == "le") le = l.second;
        }
        auto bound = parse_go_float(le);
        if (!bound || std::isnan(*bound)) {
          result.errors.push_back(family + ": invalid le \"" + le + "\"");
          continue;
        }
        series[without_le(s)].buckets.emplace_back(*bound, s.value);
      } else if (s.name == family + "_sum") {
        series[without_le(s)].sum = s.value;
      } else if (s.name == family + "_count") {
        series[without_le(s)].count = s.value;
      }
    }
    for (const auto& [labels, h] : series) {
      const std::string where = family + "{" + labels + "}";
      if (h.buckets.empty() || !std::isinf(h.buckets.back().first) || h.buckets.back().first < 0) {
        result.errors.push_back(where + ": no le=\"+Inf\" bucket last");
      }
      for (std::size_t k = 1; k < h.buckets.size(); ++k) {
        if (!(h.buckets[k].first > h.buckets[k - 1].first)) {
          result.errors.push_back(where + ": buckets not in increasing le order");
        }
        if (h.buckets[k].second < h.buckets[k - 1].second) {
          result.errors.push_back(where + ": bucket counts decrease (not cumulative)");
        }
      }
      if (!h.count) result.errors.push_back(where + ": no _count");
      if (!h.sum) result.errors.push_back(where + ": no _sum");
      if (h.count && !h.buckets.empty() && h.buckets.back().second != *h.count) {
        result.errors.push_back(where + ": +Inf bucket != _count");
      }
    }
  }
  return result;
}

}  // namespace idem::testing
