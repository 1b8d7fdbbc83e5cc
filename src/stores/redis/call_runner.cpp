// Routing, grouping and redirections of calls; see call_runner.h.
#include "stores/redis/call_runner.h"

#include <algorithm>

namespace idem::redis_detail {

void CallRunner::Group::format(void* context, std::string& out) {
  auto* group = static_cast<Group*>(context);
  CallRunner& runner = *group->runner;
  const auto& all = scripts();
  group->calls.each([&](std::size_t i) {
    const Call& c = runner.calls_[i];
    if (c.asking) append_command(out, {"ASKING"});
    if (c.script) {
      std::array<std::string_view, ArgList::kMax + 4> argv{};
      std::size_t n = 0;
      const Script& s = all[*c.script];
      argv[n++] = c.use_eval ? "EVAL" : "EVALSHA";
      argv[n++] = c.use_eval ? std::string_view(s.body) : std::string_view(s.sha);
      argv[n++] = "1";
      argv[n++] = c.key;
      for (std::size_t a = 0; a < c.args.size(); ++a) argv[n++] = c.args[a];
      append_command(out, std::span<const std::string_view>(argv.data(), n));
    } else {
      std::array<std::string_view, ArgList::kMax> argv{};
      for (std::size_t a = 0; a < c.args.size(); ++a) argv[a] = c.args[a];
      append_command(out, std::span<const std::string_view>(argv.data(), c.args.size()));
    }
    if (c.wait) append_command(out, {"WAIT", runner.core_.wait_replicas_text(), runner.core_.wait_timeout_text()});
  });
}

void CallRunner::Group::complete(std::span<ReplyPtr> replies, const IoError* error) {
  runner->group_done(*this, replies, error);
}

void CallRunner::run_calls() {
  rounds_ = 0;
  waited_for_routes_ = false;
  send_round();
}

void CallRunner::send_round() {
  if (++rounds_ > 6) {
    on_calls_done(map_error(Failure::kUnexpected, "too many redirections (cluster resharding?)"));
    return;
  }
  for (Call& c : calls_) {
    if (c.reply || c.node != nullptr) continue;
    c.node = topology_.route(c.key);
    if (c.node != nullptr) continue;
    if (waited_for_routes_) {
      on_calls_done(map_error(Failure::kServerReply,
                              "CLUSTERDOWN no node serves the slot of '" + std::string(c.key) + "' (cluster map)"));
      return;
    }
    // The slot map is loading: resume on the loop once it is there.
    waited_for_routes_ = true;
    --rounds_;
    topology_.when_ready([this](Status st) {
      if (!st) {
        on_calls_done(std::move(st));
      } else {
        send_round();
      }
    });
    return;
  }
  active_groups_ = 0;
  for (std::size_t i = 0; i < calls_.size(); ++i) {
    Call& c = calls_[i];
    if (c.reply) continue;
    Group* g = nullptr;
    for (std::size_t k = 0; k < active_groups_; ++k) {
      if (group(k).node == c.node) g = &group(k);
    }
    if (g == nullptr) {
      if (active_groups_ > more_groups_.size()) more_groups_.push_back(std::make_unique<Group>());
      g = &group(active_groups_++);
      g->runner = this;
      g->node = c.node;
      g->calls.clear();
    }
    g->calls.push_back(i);
  }
  for (std::size_t k = 0; k < active_groups_; ++k) {
    Group& g = group(k);
    std::uint32_t expected = 0;
    g.calls.each([&](std::size_t i) {
      const Call& c = calls_[i];
      expected += 1U + (c.asking ? 1U : 0U) + (c.wait ? 1U : 0U);
    });
    g.expected = expected;
    g.sync = sync_;
    if (!g.node->breaker().allow()) {
      for (std::size_t j = 0; j < k; ++j) group(j).node->breaker().release();
      core_.counters().rejected.fetch_add(1, std::memory_order_relaxed);
      on_calls_done(map_error(Failure::kCircuitOpen, "circuit breaker open for " + g.node->name() +
                                                         " after repeated failures; not calling it until it recovers"));
      return;
    }
  }
  failure_.reset();
  // One reference per group plus ours, so that a group completing at once
  // cannot finish the round while groups are still being sent.
  pending_.store(active_groups_ + 1, std::memory_order_relaxed);
  const std::size_t count = active_groups_;
  for (std::size_t k = 0; k < count; ++k) {
    Group& g = group(k);
    g.node->pick().submit(g, &Group::format, &g);
  }
  if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) finish_round();
}

void CallRunner::group_done(Group& group, std::span<ReplyPtr> replies, const IoError* error) {
  if (error != nullptr) {
    if (error->error.retryable()) {
      group.node->breaker().record(false);
    } else {
      group.node->breaker().release();
    }
    std::lock_guard lock(failure_mutex_);
    if (!failure_) failure_ = error->error;
    maybe_executed_ = maybe_executed_ || error->maybe_executed;
  } else {
    group.node->breaker().record(true);
    std::size_t pos = 0;
    group.calls.each([&](std::size_t i) {
      Call& c = calls_[i];
      if (c.asking) ++pos;  // +OK of ASKING
      c.asking = false;
      c.reply = std::move(replies[pos++]);
      if (c.wait) c.wait_reply = std::move(replies[pos++]);
    });
    std::lock_guard lock(failure_mutex_);
    maybe_executed_ = true;
  }
  if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) finish_round();
}

void CallRunner::finish_round() {
  if (failure_) {
    Error e = std::move(*failure_);
    failure_.reset();
    on_calls_done(std::move(e));
    return;
  }
  bool again = false;
  bool malformed = false;
  std::string malformed_text;
  for (std::size_t k = 0; k < active_groups_; ++k) {
    group(k).calls.each([&](std::size_t i) {
      Call& c = calls_[i];
      if (malformed || !c.reply || c.reply->type != REDIS_REPLY_ERROR) return;
      const std::string_view text = reply_text(c.reply.get());
      if (text.starts_with("NOSCRIPT") && c.script && !c.use_eval) {
        c.use_eval = true;
      } else if (text.starts_with("MOVED ") || text.starts_with("ASK ")) {
        bool asking = false;
        Node* target = topology_.redirect(text, asking);
        if (target == nullptr) {
          malformed = true;
          malformed_text = text;
          return;
        }
        core_.counters().redirects.fetch_add(1, std::memory_order_relaxed);
        c.node = target;
        c.asking = asking;
      } else {
        if (text.starts_with("READONLY")) c.node->reset("the server answered READONLY: it is no longer a master");
        return;
      }
      c.reply.reset();
      c.wait_reply.reset();
      again = true;
    });
  }
  if (malformed) {
    on_calls_done(map_error(Failure::kUnexpected, "unexpected reply: " + malformed_text));
    return;
  }
  if (again) {
    send_round();
  } else {
    on_calls_done({});
  }
}

}  // namespace idem::redis_detail
