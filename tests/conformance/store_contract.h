// File: tests/conformance/store_contract.h
//
// The one contract suite every Store runs (SPEC §2 and §4). The test bodies
// live in store_contract.cpp, compiled once into the idem_contract_suite
// library; a store's test binary joins with one line:
//
//   #include "conformance/store_contract.h"
//   StoreFixture memory_fixture() {
//     return StoreFixture{"Memory", [] { return idem::MemoryStore::create(); }};
//   }
//   INSTANTIATE_STORE_CONTRACT_BOTH_APIS(Memory, memory_fixture());
//
// and links the idem_contract_suite library (see tests/conformance/stores.cmake).
//
// INSTANTIATE_STORE_CONTRACT_BOTH_APIS runs the suite twice: once on the
// synchronous API (tests named Memory/StoreContract.*), and once through the
// asynchronous API (MemoryThroughAsync/...), where every synchronous call of
// the suite becomes the store's *_async call plus a wait, and the store's
// callback contract is checked on the way (done exactly once; requests only
// borrowed until the call returns; see async_as_sync_store.h). Every store
// uses this form. INSTANTIATE_STORE_CONTRACT(Name, fixture) runs the
// synchronous half alone, and through_async_api(fixture) makes the other
// half of any fixture.
//
// The suite assumes nothing process-local: keys carry a random prefix per
// test, time is real (short leases and sleeps, no ManualClock), so network
// stores can run it against a live server. `make` is called once per test;
// for the stats test to see exact deltas it should return a store that no
// other writer is changing at the same time (a fresh file, a fresh database).
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <ostream>
#include <string>

#include "idem/core/store.h"

namespace idem::conformance {

struct StoreFixture {
  std::string name;  // the test-name suffix: letters, digits and '_' only
  std::function<std::shared_ptr<idem::Store>()> make;
};

// Test names show the fixture's name instead of its bytes.
inline void PrintTo(const StoreFixture& fixture, std::ostream* os) { *os << fixture.name; }

// through_async_api() wraps `fixture`'s stores in AsyncAsSyncStore and
// appends "ThroughAsync" to its name.
StoreFixture through_async_api(StoreFixture fixture);

// Referenced by INSTANTIATE_STORE_CONTRACT so that the linker keeps the
// object file holding the TEST_P registrations (it is in a static library).
int contract_suite_anchor();

class StoreContract : public ::testing::TestWithParam<StoreFixture> {
 protected:
  void SetUp() override;
  void TearDown() override;

  // A key unique to this test run: "<random prefix><suffix>".
  std::string key(std::string_view suffix) const;
  const std::string& prefix() const { return prefix_; }
  idem::Store& store() { return *store_; }

  std::shared_ptr<idem::Store> store_;
  std::string prefix_;
};

}  // namespace idem::conformance

using idem::conformance::StoreContract;
using idem::conformance::StoreFixture;

#define INSTANTIATE_STORE_CONTRACT(Name, fixture)                                                               \
  [[maybe_unused]] static const int idem_contract_anchor_##Name = ::idem::conformance::contract_suite_anchor(); \
  INSTANTIATE_TEST_SUITE_P(                                                                                     \
      Name, StoreContract, ::testing::Values(fixture),                                                          \
      [](const ::testing::TestParamInfo<StoreFixture>& param_info) { return param_info.param.name; })

#define INSTANTIATE_STORE_CONTRACT_BOTH_APIS(Name, fixture) \
  INSTANTIATE_STORE_CONTRACT(Name, fixture);                \
  INSTANTIATE_STORE_CONTRACT(Name##ThroughAsync, ::idem::conformance::through_async_api(fixture))
