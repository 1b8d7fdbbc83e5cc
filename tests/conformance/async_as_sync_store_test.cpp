// File: tests/conformance/async_as_sync_store_test.cpp
//
// The checks AsyncAsSyncStore adds to the contract suite can fail: a store
// that answers twice, or keeps a view into the caller's request, is caught.
// (One that never answers fails after a minute; not worth a minute of CI.)
#include "conformance/async_as_sync_store.h"

#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include <thread>

#include "idem/stores/memory.h"

namespace idem::conformance {
namespace {

// A store whose asynchronous forms misbehave in one chosen way; its
// synchronous forms are a MemoryStore's.
class MisbehavingStore final : public Store {
 public:
  enum class Fault { kAnswerTwice, kKeepTheRequestsView };
  explicit MisbehavingStore(Fault fault) : fault_(fault) {}
  ~MisbehavingStore() override {
    if (late_.joinable()) late_.join();
  }
  MisbehavingStore(const MisbehavingStore&) = delete;
  MisbehavingStore& operator=(const MisbehavingStore&) = delete;

  std::string_view kind() const noexcept override { return "misbehaving"; }
  Result<ClaimOutcome> claim(const ClaimRequest& r) override { return inner_->claim(r); }
  Status complete(const CompleteRequest& r) override { return inner_->complete(r); }
  Status fail(const FailRequest& r) override { return inner_->fail(r); }
  Status extend(std::string_view k, Token t, std::chrono::milliseconds l) override { return inner_->extend(k, t, l); }
  Status checkpoint(std::string_view k, Token t, const Checkpoint& c) override { return inner_->checkpoint(k, t, c); }
  Result<std::optional<IdempotencyRecord>> get(std::string_view k) override { return inner_->get(k); }
  Result<bool> remove(std::string_view k) override { return inner_->remove(k); }
  Result<ScanPage> scan(const ScanOptions& o) override { return inner_->scan(o); }
  Result<StoreStats> stats() override { return inner_->stats(); }
  Result<SweepReport> sweep() override { return inner_->sweep(); }
  Status ping() override { return inner_->ping(); }

  void get_async(std::string_view key, ResultCallback<std::optional<IdempotencyRecord>> done) override {
    switch (fault_) {
      case Fault::kAnswerTwice:
        done(inner_->get(key));
        done(inner_->get(key));
        break;
      case Fault::kKeepTheRequestsView:
        // Answers later from another thread, reading the caller's key then.
        late_ = std::thread([this, key, done = std::move(done)] {
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
          seen_ = std::string(key);
          done(inner_->get(seen_));
        });
        break;
    }
  }

  std::string seen_;

 private:
  Fault fault_;
  std::shared_ptr<Store> inner_ = MemoryStore::create();
  std::thread late_;
};

TEST(AsyncAsSyncStore, CatchesASecondAnswer) {
  AsyncAsSyncStore store(std::make_shared<MisbehavingStore>(MisbehavingStore::Fault::kAnswerTwice));
  EXPECT_NONFATAL_FAILURE((void)store.get("k"), "done was called 2 times");
}

TEST(AsyncAsSyncStore, ScribblesOverTheRequestOnceTheCallReturned) {
#if defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "the misbehaving store races with the caller on purpose, which TSan rightly reports";
#endif
  auto inner = std::make_shared<MisbehavingStore>(MisbehavingStore::Fault::kKeepTheRequestsView);
  AsyncAsSyncStore store(inner);
  (void)store.get("the-key");
  EXPECT_NE(inner->seen_, "the-key") << "a store that kept the view would have read the real key";
}

}  // namespace
}  // namespace idem::conformance
