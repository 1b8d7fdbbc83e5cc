// File: examples/common/example.h
//
// What every example shares, so that each main.cpp shows only its subject:
//
//  * the store: the URL given as the first argument (redis://127.0.0.1:6379,
//    sqlite:///var/lib/app/idem.db, ...), else a fresh SQLite file in a
//    temporary directory that is removed at exit;
//  * a key prefix unique to each run, so that running an example twice
//    against the same Redis starts clean (your service keeps the default
//    prefix, "idempotency:events:");
//  * check(), which prints what was expected and whether it happened, and
//    finish(), which makes the example exit non-zero when anything did not.
//
// Not part of the library: copy what you need.
#pragma once

#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <string_view>

#include "idem/idem.h"

namespace example {

class Run {
 public:
  Run(int argc, char** argv, std::string_view title) {
    std::printf("== %.*s ==\n", static_cast<int>(title.size()), title.data());
    if (argc > 1) {
      url_ = argv[1];
    } else {
      const char* tmp = std::getenv("TMPDIR");
      std::string pattern = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/idem-example-XXXXXX";
      if (::mkdtemp(pattern.data()) == nullptr) {
        std::perror("mkdtemp");
        std::exit(2);
      }
      temp_dir_ = pattern;
      url_ = "sqlite://" + temp_dir_ + "/idem.db";
    }
    std::random_device random;
    std::array<char, 9> run_id{};
    std::snprintf(run_id.data(), run_id.size(), "%08x", random());
    prefix_ = std::string("idem-example:") + run_id.data() + ":";
    std::printf("store: %s (keys under %s)\n\n", url_.c_str(), prefix_.c_str());
  }
  ~Run() {
    std::error_code ignored;
    if (!temp_dir_.empty()) std::filesystem::remove_all(temp_dir_, ignored);
  }
  Run(const Run&) = delete;
  Run& operator=(const Run&) = delete;

  const std::string& url() const { return url_; }
  bool process_local() const { return url_.rfind("memory:", 0) == 0; }

  // A checker on the example's store with `options`, under this run's key
  // prefix. Exits when the store cannot be opened.
  std::shared_ptr<idem::IdempotencyChecker> checker(idem::CheckerOptions options = {}) const {
    options.key.prefix = prefix_;
    auto checker = idem::IdempotencyChecker::from_url(url_, std::move(options));
    if (!checker) {
      std::fprintf(stderr, "cannot open the store %s: %s\n", url_.c_str(), checker.error().to_string().c_str());
      std::exit(2);
    }
    return std::move(*checker);
  }

  // Records one expectation: prints it, remembers a failure.
  bool check(bool ok, std::string_view what) {
    std::printf("  [%s] %.*s\n", ok ? "ok" : "FAILED", static_cast<int>(what.size()), what.data());
    if (!ok) ++failures_;
    return ok;
  }

  // The exit status of main(): 0 when every check held.
  int finish() const {
    if (failures_ == 0) {
      std::printf("\nall checks passed\n");
      return 0;
    }
    std::printf("\n%d check(s) FAILED\n", failures_);
    return 1;
  }

 private:
  std::string url_;
  std::string temp_dir_;
  std::string prefix_;
  int failures_ = 0;
};

// An envelope as a producer would send it.
inline idem::Envelope event(std::string id, std::string type, std::string_view payload_json = "{}") {
  idem::Envelope e;
  e.event_id = std::move(id);
  e.event_type = std::move(type);
  if (auto status = e.set_payload_json(payload_json); !status) {
    std::fprintf(stderr, "bad payload: %s\n", status.error().to_string().c_str());
    std::exit(2);
  }
  return e;
}

}  // namespace example
