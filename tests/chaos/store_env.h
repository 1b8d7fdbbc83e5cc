// File: tests/chaos/store_env.h
//
// The stores a chaos run can target, and the faults each can suffer. Each
// store is one entry of the table in store_env.cpp: a name, a start function
// that brings the store up in a scratch directory (servers on free loopback
// ports), and whether it is transactional (the effect commits with the
// completion, so no duplicate is allowed). Adding a store is adding an entry.
#pragma once

#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "chaos/history.h"

namespace idem::chaos {

class StoreEnv {
 public:
  virtual ~StoreEnv() = default;
  // url() is what the workers open.
  virtual std::string url() const = 0;
  // faults() names the store faults inject() knows, e.g. "kill", "freeze".
  virtual std::vector<std::string> faults() const = 0;
  // inject() applies one fault and heals it before returning (it blocks for
  // the fault's duration), recording store.fault and store.heal lines.
  virtual bool inject(const std::string& fault, std::mt19937_64& rng, HistoryWriter& history, std::string* error) = 0;
  // transactional() is true when effects commit with the completion.
  virtual bool transactional() const { return false; }
};

// The table of a transactional store's effects: one row (key, token) per
// effect, written in the transaction that completes the key.
inline constexpr std::string_view kChaosEffectsTable = "chaos_effects";

struct StoreSpec {
  std::string dir;   // scratch directory for files the store needs
  int lease_ms = 0;  // the workers' lease, to size freezes around it
};

// start_store() brings up store `name` ("sqlite", "redis", "redis-sentinel",
// "postgres", or "url:<store URL>" for a store you run yourself, without
// store faults).
// nullptr with a message on failure; *missing is set when a server binary is
// not installed (the caller may skip).
std::unique_ptr<StoreEnv> start_store(const std::string& name, const StoreSpec& spec, std::string* error,
                                      bool* missing);

// store_names() lists the names start_store() knows, for --help.
std::vector<std::string> store_names();

}  // namespace idem::chaos
