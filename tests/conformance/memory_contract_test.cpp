// File: tests/conformance/memory_contract_test.cpp
//
// The store contract suite against MemoryStore (a fresh store per test).
#include "conformance/store_contract.h"
#include "idem/stores/memory.h"

namespace {

StoreFixture memory_fixture() {
  return StoreFixture{"Memory", [] { return idem::MemoryStore::create(); }};
}

}  // namespace

INSTANTIATE_STORE_CONTRACT(Memory, memory_fixture());
