// File: tests/chaos/unfenced_store.h
//
// The planted bug for the chaos harness (never used outside tests): a Store
// wrapper whose complete() ignores fencing, like the Powertools bug the
// issue cites. When the real store answers kLeaseLost it deletes the record,
// claims the key afresh and completes it with the stale worker's result, then
// reports success. `idem_chaos run --planted-bug unfenced` makes every worker
// use it; the checker must then report stale writes and overwritten results.
#pragma once

#include <memory>

#include "idem/core/store.h"

namespace idem::chaos {

std::shared_ptr<Store> make_unfenced_store(std::shared_ptr<Store> inner);

}  // namespace idem::chaos
