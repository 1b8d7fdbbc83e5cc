// File: tests/conformance/async_as_sync.h
//
// async_as_sync() runs the contract suite through a store's asynchronous
// API (AsyncAsSyncStore, async_as_sync_store.h): each synchronous method
// calls the wrapped store's *_async form and waits for its callback.
//
//   StoreFixture{"RedisAsync", [] { return idem::conformance::async_as_sync(open_redis()); }}
#pragma once

#include <memory>
#include <utility>

#include "conformance/async_as_sync_store.h"

namespace idem::conformance {

// async_as_sync() wraps `store`; nullptr stays nullptr.
inline std::shared_ptr<Store> async_as_sync(std::shared_ptr<Store> store) {
  if (!store) return nullptr;
  return std::make_shared<AsyncAsSyncStore>(std::move(store));
}

}  // namespace idem::conformance
