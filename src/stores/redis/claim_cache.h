// File: src/stores/redis/claim_cache.h
//
// ClaimCache remembers, for the claims this store made with a plain SET, the
// exact record it wrote, until the owner completes or fails the key. That
// lets complete and fail use the swap script (GET, compare, SET) instead of
// parsing the record in Lua, which costs Redis about twice as much. It is
// only a shortcut: a missing entry (never cached, evicted, another process)
// takes the full script, so the cache is bounded by simply dropping a shard
// that grows too large.
#pragma once

#include <array>
#include <cstddef>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "idem/core/record.h"

namespace idem::redis_detail {

class ClaimCache {
 public:
  // put() remembers `record` as what `token` wrote at `key`.
  void put(std::string_view key, Token token, std::string record);
  // take() returns and forgets the record `token` wrote at `key`, if known.
  std::optional<std::string> take(std::string_view key, Token token);

 private:
  static constexpr std::size_t kShards = 16;
  // 16 x 1024 owners in flight: past that, completions take the full script.
  static constexpr std::size_t kMaxPerShard = 1024;
  struct Entry {
    Token token = 0;
    std::string record;
  };
  struct Shard {
    std::mutex mutex;
    std::unordered_map<std::string, Entry> entries;
  };
  Shard& shard(std::string_view key) { return shards_[std::hash<std::string_view>{}(key) % kShards]; }
  std::array<Shard, kShards> shards_;
};

}  // namespace idem::redis_detail
