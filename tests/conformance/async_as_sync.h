// File: tests/conformance/async_as_sync.h
//
// AsyncAsSyncStore runs the contract suite through a store's asynchronous
// API: each synchronous method calls the wrapped store's *_async form and
// waits for its callback, so the same tests check both APIs. It also checks
// the callback contract of store.h: exactly one call per operation.
//
//   StoreFixture{"RedisAsync", [] { return idem::conformance::async_as_sync(open_redis()); }}
#pragma once

#include <memory>

#include "idem/core/store.h"

namespace idem::conformance {

// async_as_sync() wraps `store`; nullptr stays nullptr.
std::shared_ptr<Store> async_as_sync(std::shared_ptr<Store> store);

}  // namespace idem::conformance
