// File: src/stores/redis/call_runner.h
//
// Call is one command with one reply: a script on a key, or a plain command
// (on a key, or on a given node). CallRunner sends a set of calls: it routes
// each, groups them per node, sends every node's group as one request, the
// nodes in parallel, and follows what Redis asks before an answer is final
// (-NOSCRIPT: resend with EVAL; -MOVED / -ASK: resend to the node named).
// The operation deriving from it then reads the replies.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "stores/redis/connection.h"
#include "stores/redis/scripts.h"
#include "stores/redis/store_core.h"
#include "stores/redis/topology.h"

namespace idem::redis_detail {

// ArgList holds a call's arguments in one buffer (the caller's memory is
// gone by the time a retry or a redirection re-sends them).
class ArgList {
 public:
  static constexpr std::size_t kMax = 10;
  void add(std::string_view arg) {
    data_.append(arg);
    ends_[count_++] = static_cast<std::uint32_t>(data_.size());
  }
  void add_number(std::int64_t value) {
    append_decimal(data_, value);
    ends_[count_++] = static_cast<std::uint32_t>(data_.size());
  }
  void add_unsigned(std::uint64_t value) {
    append_decimal(data_, value);
    ends_[count_++] = static_cast<std::uint32_t>(data_.size());
  }
  std::size_t size() const { return count_; }
  std::string_view operator[](std::size_t i) const {
    const std::uint32_t begin = i == 0 ? 0 : ends_[i - 1];
    return std::string_view(data_).substr(begin, ends_[i] - begin);
  }
  void clear() {
    data_.clear();
    count_ = 0;
  }

 private:
  std::string data_;
  std::array<std::uint32_t, kMax> ends_{};
  std::size_t count_ = 0;
};

struct Call {
  std::optional<ScriptId> script;  // empty: `args` is the whole command
  std::string_view key;            // routing key (the operation owns it); empty: `node` is preset
  ArgList args;                    // scripts: ARGV only
  bool wait = false;               // WAIT replicas timeout follows
  Node* node = nullptr;            // set by routing, or preset
  bool asking = false;             // ASKING precedes it (Cluster ASK)
  bool use_eval = false;           // NOSCRIPT seen: send the body
  ReplyPtr reply;
  ReplyPtr wait_reply;

  // fresh() forgets routing and replies, for a new attempt.
  void fresh() {
    node = nullptr;
    asking = false;
    use_eval = false;
    reply.reset();
    wait_reply.reset();
  }
};

class CallRunner {
 public:
  virtual ~CallRunner() = default;

 protected:
  CallRunner(StoreCore& core, Topology& topology, bool sync) : core_(core), topology_(topology), sync_(sync) {}

  // run_calls() sends every call of calls_ that has no reply yet; then
  // on_calls_done() is called once, with OK when every call has its final
  // reply, or the failure (a broken connection, an open circuit, no route).
  void run_calls();
  virtual void on_calls_done(Status status) = 0;

  StoreCore& core_;
  Topology& topology_;
  const bool sync_;
  std::vector<Call> calls_;
  // The current attempt may have changed something on a server: a request
  // reached one, or could have.
  bool maybe_executed_ = false;
  // An error came from Redis answering (not from Redis's health).
  bool redis_answered_ = false;

 private:
  // IndexList is a list of call indices that keeps the first few inline:
  // most operations are one call on one node.
  class IndexList {
   public:
    void clear() {
      size_ = 0;
      more_.clear();
    }
    void push_back(std::size_t i) {
      if (size_ < inline_.size()) {
        inline_[size_] = i;
      } else {
        more_.push_back(i);
      }
      ++size_;
    }
    template <typename F>
    void each(F&& f) const {
      for (std::size_t k = 0; k < size_ && k < inline_.size(); ++k) f(inline_[k]);
      for (std::size_t i : more_) f(i);
    }

   private:
    std::array<std::size_t, 4> inline_{};
    std::vector<std::size_t> more_;
    std::size_t size_ = 0;
  };

  struct Group final : Request {
    CallRunner* runner = nullptr;
    Node* node = nullptr;
    IndexList calls;
    void complete(std::span<ReplyPtr> replies, const IoError* error) override;
    static void format(void* context, std::string& out);
  };

  // group(k): the first group is inline (one node: no allocation).
  Group& group(std::size_t k) { return k == 0 ? first_group_ : *more_groups_[k - 1]; }

  void send_round();
  void group_done(Group& group, std::span<ReplyPtr> replies, const IoError* error);
  void finish_round();

  Group first_group_;
  std::vector<std::unique_ptr<Group>> more_groups_;
  std::size_t active_groups_ = 0;
  std::atomic<std::size_t> pending_{0};
  std::mutex failure_mutex_;
  std::optional<Error> failure_;
  int rounds_ = 0;
  bool waited_for_routes_ = false;
};

}  // namespace idem::redis_detail
