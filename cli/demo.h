// File: cli/demo.h
//
// `idem demo`: an at-least-once stream played against a real store, with a
// worker that dies mid-handler. Returns the process exit code.
#pragma once

#include <cstddef>
#include <string>

namespace idem::cli {

struct DemoOptions {
  std::string store_url;  // empty: the default store (SQLite)
  std::size_t events = 200;
  std::size_t workers = 8;
  std::size_t deliveries_per_event = 3;
  bool json = false;
};

int run_demo(const DemoOptions& options);

}  // namespace idem::cli
