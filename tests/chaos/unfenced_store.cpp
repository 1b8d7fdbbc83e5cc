// The planted fencing bug; see unfenced_store.h.
#include "chaos/unfenced_store.h"

#include <utility>

namespace idem::chaos {
namespace {

class UnfencedStore final : public Store {
 public:
  explicit UnfencedStore(std::shared_ptr<Store> inner) : inner_(std::move(inner)) {}

  std::string_view kind() const noexcept override { return inner_->kind(); }
  Result<ClaimOutcome> claim(const ClaimRequest& request) override { return inner_->claim(request); }

  Status complete(const CompleteRequest& request) override {
    Status st = inner_->complete(request);
    if (st.ok() || st.error().code() != ErrorCode::kLeaseLost) return st;
    // The bug: the stale caller's write goes in anyway.
    (void)inner_->remove(request.key);
    ClaimRequest again;
    again.key = request.key;
    again.event_id = request.key;
    auto claimed = inner_->claim(again);
    if (!claimed || !claimed->acquired()) return st;
    CompleteRequest forced = request;
    forced.token = claimed->token;
    return inner_->complete(forced);
  }

  Status fail(const FailRequest& request) override { return inner_->fail(request); }
  Status extend(std::string_view key, Token token, std::chrono::milliseconds lease) override {
    return inner_->extend(key, token, lease);
  }
  Status checkpoint(std::string_view key, Token token, const Checkpoint& checkpoint) override {
    return inner_->checkpoint(key, token, checkpoint);
  }
  Result<std::optional<IdempotencyRecord>> get(std::string_view key) override { return inner_->get(key); }
  Result<bool> remove(std::string_view key) override { return inner_->remove(key); }
  Result<ScanPage> scan(const ScanOptions& options) override { return inner_->scan(options); }
  Result<StoreStats> stats() override { return inner_->stats(); }
  Result<SweepReport> sweep() override { return inner_->sweep(); }
  Status ping() override { return inner_->ping(); }

 private:
  std::shared_ptr<Store> inner_;
};

}  // namespace

std::shared_ptr<Store> make_unfenced_store(std::shared_ptr<Store> inner) {
  return std::make_shared<UnfencedStore>(std::move(inner));
}

}  // namespace idem::chaos
