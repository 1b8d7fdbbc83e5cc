// The records of this store's plain-SET claims; see claim_cache.h.
#include "stores/redis/claim_cache.h"

namespace idem::redis_detail {

void ClaimCache::put(std::string_view key, Token token, std::string record) {
  Shard& s = shard(key);
  std::lock_guard lock(s.mutex);
  // Owners that never finish (a crash is a process gone; a hang, a lost
  // lease) would make it grow: past the bound, forget them all.
  if (s.entries.size() >= kMaxPerShard) s.entries.clear();
  s.entries.insert_or_assign(std::string(key), Entry{token, std::move(record)});
}

std::optional<std::string> ClaimCache::take(std::string_view key, Token token) {
  Shard& s = shard(key);
  std::lock_guard lock(s.mutex);
  auto it = s.entries.find(std::string(key));
  if (it == s.entries.end() || it->second.token != token) return std::nullopt;
  std::string record = std::move(it->second.record);
  s.entries.erase(it);
  return record;
}

}  // namespace idem::redis_detail
