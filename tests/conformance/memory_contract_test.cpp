// File: tests/conformance/memory_contract_test.cpp
//
// The store contract suite, through the synchronous and the asynchronous
// API, against MemoryStore (a fresh store per test).
#include "conformance/store_contract.h"
#include "idem/stores/memory.h"

namespace {

StoreFixture memory_fixture() {
  return StoreFixture{"Memory", [] { return idem::MemoryStore::create(); }};
}

}  // namespace

INSTANTIATE_STORE_CONTRACT_BOTH_APIS(Memory, memory_fixture());
