// File: src/stores/redis/scripts.h
//
// The server-side half of the Redis store: one Lua script per state-machine
// operation, so each operation is atomic and one round trip (EVALSHA, with an
// EVAL fallback on NOSCRIPT).
//
// Record layout: one Redis string per key, a short text header followed by
// the variable-length values, so that a claim is a single
// `SET key record NX GET PX ttl` inside the script (create-or-read in one
// call; a hash needed four calls and cost about twice the server time), and
// a completed record with a 36-byte key and a 30-byte result stays under 200
// bytes (MEMORY USAGE):
//
//   S,token,attempt,first,lease,cdelta,M;le,ly,lp,lr,lx,lkn,lkd;<e><y><p><r><x><kn><kd>
//
//   S       P processing, C completed, F failed (retryable), X failed (terminal)
//   token   fencing token (decimal)     attempt   claims so far
//   first   first seen, ms since epoch  lease     lease expiry, ms (empty once finished)
//   cdelta  completed/failed at, ms after first (empty while processing)
//   M       E: the event id is the last `le` bytes of the key (no copy; the
//           default, where the idempotency key is the event id); e: it is the
//           blob <e> of `le` bytes
//   le..lkd lengths of event id, type, fingerprint, result, error, checkpoint
//           name and data; an empty length means "absent" (0 is present and
//           empty), for result, error and checkpoint
//
// Every write sets a TTL in the same command (SET ... PX, or KEEPTTL on an
// unchanged TTL): nothing is ever stored without one, and while PROCESSING
// the TTL is at least the lease.
//
// Tokens: max(server TIME in microseconds, previous token + 1). The clock part
// keeps tokens increasing across deletion and expiry of the record (nothing
// else survives the key, and a script in Cluster may touch only its own key);
// the +1 part keeps them strictly increasing within a life of the key even if
// two claims fall in the same microsecond. Numbers stay below 2^53, exact in
// Lua's doubles; they are formatted with %.0f because Lua's default %.14g
// would round a 16-digit token.
#pragma once

#include <string_view>

namespace idem::redis_detail {

// Shared by every script: parse() and pack() of the layout above.
inline constexpr std::string_view kPrelude = R"lua(
local function parse(v)
  local s, t, a, f, l, c, m, le, ly, lp, lr, lx, lkn, lkd, pos = string.match(v,
    '^(%u),(%d+),(%d+),(%d+),(%d*),(%d*),(%a);(%d+),(%d+),(%d+),(%d*),(%d*),(%d*),(%d*);()')
  if not s then return nil end
  local R = {s = s, t = t, a = a, f = f, l = l, c = c, m = m, le = tonumber(le)}
  local o = pos
  local function take(n)
    if n == '' then return nil end
    n = tonumber(n)
    local x = string.sub(v, o, o + n - 1)
    o = o + n
    return x
  end
  if m == 'e' then R.e = take(le) else R.e = '' end
  R.y = take(ly)
  R.p = take(lp)
  R.r = take(lr)
  R.x = take(lx)
  R.kn = take(lkn)
  R.kd = take(lkd)
  return R
end
local function len(x)
  if x then return #x end
  return ''
end
local function pack(R)
  return R.s .. ',' .. R.t .. ',' .. R.a .. ',' .. R.f .. ',' .. R.l .. ',' .. R.c .. ',' .. R.m .. ';' ..
    R.le .. ',' .. #R.y .. ',' .. #R.p .. ',' .. len(R.r) .. ',' .. len(R.x) .. ',' .. len(R.kn) .. ',' ..
    len(R.kd) .. ';' .. R.e .. R.y .. R.p .. (R.r or '') .. (R.x or '') .. (R.kn or '') .. (R.kd or '')
end
local function now_us()
  local tm = redis.call('TIME')
  return tonumber(tm[1]) * 1000000 + tonumber(tm[2])
end
)lua";

// The claim: kClaimFastPath + kPrelude + kClaimScript.
// KEYS[1] key; ARGV: 1 event id, 2 E|e (see M above), 3 event type,
// 4 fingerprint, 5 lease ms, 6 ttl ms.
// Acquired:  {'A', kind N|T|R, token, attempt, lease_expires_ms [, ck name, ck data]}
// Otherwise: {status M|C|F|I, expire_at_ms, record}
inline constexpr std::string_view kClaimFastPath = R"lua(
local k = KEYS[1]
local tm = redis.call('TIME')
local us = tonumber(tm[1]) * 1000000 + tonumber(tm[2])
local now = math.floor(us / 1000)
local lease = tonumber(ARGV[5])
local keep = tonumber(ARGV[6])
if lease > keep then keep = lease end
local tok = string.format('%.0f', us)
local lexp = string.format('%.0f', now + lease)
local eb = ''
if ARGV[2] == 'e' then eb = ARGV[1] end
local rec = 'P,' .. tok .. ',1,' .. string.format('%.0f', now) .. ',' .. lexp .. ',,' .. ARGV[2] .. ';' ..
  #ARGV[1] .. ',' .. #ARGV[3] .. ',' .. #ARGV[4] .. ',,,,;' .. eb .. ARGV[3] .. ARGV[4]
local old = redis.call('SET', k, rec, 'NX', 'GET', 'PX', keep)
if not old then return {'A', 'N', tok, 1, lexp} end
-- Duplicates decide from the header alone, still before any helper exists.
local s, l, m, le, ly, lp, pos = string.match(old,
  '^(%u),%d+,%d+,%d+,(%d*),%d*,(%a);(%d+),(%d+),(%d+),%d*,%d*,%d*,%d*;()')
if not s then return redis.error_reply('IDEMCORRUPT the value is not an idem record') end
local fp = ''
if lp ~= '0' then
  local o = pos + tonumber(ly)
  if m == 'e' then o = o + tonumber(le) end
  fp = string.sub(old, o, o + tonumber(lp) - 1)
end
local r
if ARGV[4] ~= '' and fp ~= '' and fp ~= ARGV[4] then r = 'M'
elseif s == 'C' then r = 'C'
elseif s == 'X' then r = 'F'
elseif s == 'P' and tonumber(l) > now then r = 'I' end
if r then return {r, redis.call('PEXPIRETIME', k), old} end
)lua";

// The rest of the claim script, after the prelude: the prelude's closures
// cost about as much as the SET itself, so the common cases (a new key, a
// duplicate) return before they are created.
inline constexpr std::string_view kClaimScript = R"lua(
-- A takeover (expired lease) or a retry (retryable failure).
local R = parse(old)
if not R then return redis.error_reply('IDEMCORRUPT the value is not an idem record') end
local prev = tonumber(R.t) + 1
if prev > us then us = prev end
local kind = 'R'
if R.s == 'P' then kind = 'T' end
R.s = 'P'
R.t = string.format('%.0f', us)
R.a = tostring(tonumber(R.a) + 1)
R.l = lexp
R.c = ''
R.r = nil
R.x = nil
if ARGV[4] ~= '' then R.p = ARGV[4] end
redis.call('SET', k, pack(R), 'PX', keep)
if R.kn then return {'A', kind, R.t, R.a, lexp, R.kn, R.kd or ''} end
return {'A', kind, R.t, R.a, lexp}
)lua";

// The owner checks shared by complete/fail/extend/checkpoint return:
//   0 the record is gone, -1 the token is stale, -2 this token already made
//   the record reach the requested final state (lets a retry after a lost
//   reply succeed), -3 the record is no longer PROCESSING; 1 done.

// complete and fail rewrite the header and splice the values with string
// operations, without the prelude: they run once per new event.
// KEYS[1]; ARGV: 1 token, 2 final status C|F|X, 3 result or error, 4 ttl ms.
inline constexpr std::string_view kFinishScript = R"lua(
local k = KEYS[1]
local old = redis.call('GET', k)
if not old then return 0 end
local s, t, a, f, m, le, ly, lp, lr, lx, lkn, lkd, pos = string.match(old,
  '^(%u),(%d+),(%d+),(%d+),%d*,%d*,(%a);(%d+),(%d+),(%d+),(%d*),(%d*),(%d*),(%d*);()')
if not s then return redis.error_reply('IDEMCORRUPT the value is not an idem record') end
if t ~= ARGV[1] then return -1 end
local want = ARGV[2]
if s ~= 'P' then
  if s == want then return -2 end
  return -3
end
local tm = redis.call('TIME')
local delta = tonumber(tm[1]) * 1000 + math.floor(tonumber(tm[2]) / 1000) - tonumber(f)
-- Values: event id (mode e only), type and fingerprint are kept; the old
-- result and error are dropped; the checkpoint is kept.
local n = tonumber(ly) + tonumber(lp)
if m == 'e' then n = n + tonumber(le) end
local skip = n
if lr ~= '' then skip = skip + tonumber(lr) end
if lx ~= '' then skip = skip + tonumber(lx) end
local value = ARGV[3]
local rl, xl = #value, ''
if want ~= 'C' then rl, xl = '', #value end
local rec = want .. ',' .. t .. ',' .. a .. ',' .. f .. ',,' .. string.format('%.0f', delta) .. ',' .. m .. ';' ..
  le .. ',' .. ly .. ',' .. lp .. ',' .. rl .. ',' .. xl .. ',' .. lkn .. ',' .. lkd .. ';' ..
  string.sub(old, pos, pos + n - 1) .. value .. string.sub(old, pos + skip)
redis.call('SET', k, rec, 'PX', ARGV[4])
return 1
)lua";

// KEYS[1]; ARGV: 1 token, 2 lease ms. Extending is idempotent (same effect
// when repeated), so it is safe to retry.
inline constexpr std::string_view kExtendScript = R"lua(
local k = KEYS[1]
local old = redis.call('GET', k)
if not old then return 0 end
local R = parse(old)
if not R then return redis.error_reply('IDEMCORRUPT the value is not an idem record') end
if R.t ~= ARGV[1] then return -1 end
if R.s ~= 'P' then return -3 end
local lease = tonumber(ARGV[2])
R.l = string.format('%.0f', math.floor(now_us() / 1000) + lease)
if redis.call('PTTL', k) < lease then
  redis.call('SET', k, pack(R), 'PX', lease)
else
  redis.call('SET', k, pack(R), 'KEEPTTL')
end
return 1
)lua";

// KEYS[1]; ARGV: 1 token, 2 name, 3 data.
inline constexpr std::string_view kCheckpointScript = R"lua(
local k = KEYS[1]
local old = redis.call('GET', k)
if not old then return 0 end
local R = parse(old)
if not R then return redis.error_reply('IDEMCORRUPT the value is not an idem record') end
if R.t ~= ARGV[1] then return -1 end
if R.s ~= 'P' then return -3 end
R.kn = ARGV[2]
R.kd = ARGV[3]
redis.call('SET', k, pack(R), 'KEEPTTL')
return 1
)lua";

// KEYS[1]. Returns false when absent, else {expire_at_ms, record}.
// PEXPIRETIME (Redis 7) is absolute, so two reads of an unchanged record are
// equal (now + PTTL would drift by a millisecond).
inline constexpr std::string_view kGetScript = R"lua(
local k = KEYS[1]
local v = redis.call('GET', k)
if not v then return false end
return {redis.call('PEXPIRETIME', k), v}
)lua";

}  // namespace idem::redis_detail
