// File: src/stores/redis/scripts.h
//
// The server-side half of the Redis store: the Lua scripts for what cannot be
// one plain command. A claim on an absent key is a plain
// `SET key record NX GET PXAT expiry` chosen by the client (see
// record_codec.h); the claim script serves the rest (takeover, retry, and
// records written in format 1), and complete, fail, extend, checkpoint and
// the waiter's mark are fenced by the token inside a script, so each is atomic
// and one round trip (EVALSHA, with an EVAL fallback on NOSCRIPT).
//
// Every write sets the key's expiry to the instant the record states
// (`PXAT`), so nothing is stored without a TTL and, while PROCESSING, the TTL
// is at least the lease.
//
// Tokens written by scripts: max(server TIME in microseconds, previous token
// + 1). Numbers stay below 2^53, exact in Lua's doubles; they are formatted
// with %.0f because Lua's default %.14g would round a 16-digit token.
#pragma once

#include <array>
#include <string>
#include <string_view>

namespace idem::redis_detail {

// Shared by the scripts that rewrite a whole record: parse() and pack() of
// both formats (record_codec.h), writing format 2.
inline constexpr std::string_view kPrelude = R"lua(
local function fmt(n) return string.format('%.0f', n) end
local function parse(v)
  local s, t, a, f, l, c, m, x, le, ly, lp, lr, lx, lkn, lkd, pos = string.match(v,
    '^(%u),(%d+),(%d+),(%d+),(%d*),(%d*),(%a),(%d+);(%d+),(%d+),(%d+),(%d*),(%d*),(%d*),(%d*);()')
  local first
  if s then
    first = math.floor(tonumber(t) / 1000) - tonumber(f)
  else
    s, t, a, f, l, c, m, le, ly, lp, lr, lx, lkn, lkd, pos = string.match(v,
      '^(%u),(%d+),(%d+),(%d+),(%d*),(%d*),(%a);(%d+),(%d+),(%d+),(%d*),(%d*),(%d*),(%d*);()')
    if not s then return nil end
    first = tonumber(f)
  end
  local R = {s = s, t = t, a = a, f = first, l = l, c = c, m = m}
  if x then R.exp = first + tonumber(x) end
  local o = pos
  local function take(n)
    if n == '' then return nil end
    n = tonumber(n)
    local y = string.sub(v, o, o + n - 1)
    o = o + n
    return y
  end
  R.le = le
  if m == 'e' or m == 'w' then R.ev = take(le) else R.ev = '' end
  R.ty = take(ly)
  R.fp = take(lp)
  R.res = take(lr)
  R.err = take(lx)
  R.kn = take(lkn)
  R.kd = take(lkd)
  return R
end
local function len(y)
  if y then return #y end
  return ''
end
local function pack(R)
  local fd = math.floor(tonumber(R.t) / 1000) - R.f
  return R.s .. ',' .. R.t .. ',' .. R.a .. ',' .. fmt(fd) .. ',' .. R.l .. ',' .. R.c .. ',' .. R.m .. ',' ..
    fmt(R.exp - R.f) .. ';' .. R.le .. ',' .. #R.ty .. ',' .. #R.fp .. ',' .. len(R.res) .. ',' .. len(R.err) ..
    ',' .. len(R.kn) .. ',' .. len(R.kd) .. ';' .. R.ev .. R.ty .. R.fp .. (R.res or '') .. (R.err or '') ..
    (R.kn or '') .. (R.kd or '')
end
local function now_ms()
  local tm = redis.call('TIME')
  return tonumber(tm[1]) * 1000 + math.floor(tonumber(tm[2]) / 1000)
end
-- A format-1 record does not state its expiry: ask the key.
local function ensure_exp(R, k, fallback)
  if R.exp then return end
  local e = redis.call('PEXPIRETIME', k)
  if e < 0 then e = fallback end
  R.exp = e
end
local function corrupt() return redis.error_reply('IDEMCORRUPT the value is not an idem record') end
)lua";

// The claim, after the prelude: for an absent key (when the client has no
// server clock yet), a takeover, a retry, or a format-1 record.
// KEYS[1] key; ARGV: 1 event id, 2 E|e, 3 event type, 4 fingerprint,
// 5 lease ms, 6 ttl ms.
// Acquired:  {'A', kind N|T|R, token, attempt, lease_expires_ms [, ck name, ck data]}
// Otherwise: {status M|C|F|I, expire_at_ms, record}
inline constexpr std::string_view kClaimScript = R"lua(
local k = KEYS[1]
local tm = redis.call('TIME')
local us = tonumber(tm[1]) * 1000000 + tonumber(tm[2])
local now = math.floor(us / 1000)
local lease = tonumber(ARGV[5])
local keep = tonumber(ARGV[6])
if lease > keep then keep = lease end
local lexp = fmt(now + lease)
local eb = ''
if ARGV[2] == 'e' then eb = ARGV[1] end
local rec = 'P,' .. fmt(us) .. ',1,0,' .. lexp .. ',,' .. ARGV[2] .. ',' .. fmt(keep) .. ';' ..
  #ARGV[1] .. ',' .. #ARGV[3] .. ',' .. #ARGV[4] .. ',,,,;' .. eb .. ARGV[3] .. ARGV[4]
-- layout=json: an absent key is claimed by the client with a JSON record;
-- this script (run when the client had no clock yet) only tells the time.
if ARGV[7] == 'j' and not redis.call('GET', k) then return {'T', fmt(us)} end
local old = redis.call('SET', k, rec, 'NX', 'GET', 'PXAT', fmt(now + keep))
if not old then return {'A', 'N', fmt(us), 1, lexp} end
-- A JSON record (json_layout.h): the client decides, with this time.
if string.byte(old, 1) == 123 then return {'J', fmt(us), old} end
local R = parse(old)
if not R then return corrupt() end
ensure_exp(R, k, now + keep)
local fp = R.fp or ''
local r
if ARGV[4] ~= '' and fp ~= '' and fp ~= ARGV[4] then r = 'M'
elseif R.s == 'C' then r = 'C'
elseif R.s == 'X' then r = 'F'
elseif R.s == 'P' and tonumber(R.l) > now then r = 'I' end
if r then return {r, fmt(R.exp), old} end
-- A takeover (expired lease) or a retry (retryable failure).
local prev = tonumber(R.t) + 1
if prev > us then us = prev end
local kind = 'R'
if R.s == 'P' then kind = 'T' end
R.s = 'P'
R.t = fmt(us)
R.a = tostring(tonumber(R.a) + 1)
R.l = lexp
R.c = ''
R.res = nil
R.err = nil
R.exp = now + keep
if ARGV[4] ~= '' then R.fp = ARGV[4] end
redis.call('SET', k, pack(R), 'PXAT', fmt(R.exp))
if R.kn then return {'A', kind, R.t, R.a, lexp, R.kn, R.kd or ''} end
return {'A', kind, R.t, R.a, lexp}
)lua";

// The owner checks shared by complete/fail/extend/checkpoint return:
//   0 the record is gone, -1 the token is stale, -2 this token already made
//   the record reach the requested final state (lets a retry after a lost
//   reply succeed), -3 the record is no longer PROCESSING; 1 done; 3 the
//   record is in the other layout (JSON for these, packed for kJsonOwner):
//   send the other script.

// complete and fail rewrite the header and splice the values with string
// operations, without the prelude: they run once per new event. A record a
// waiter marked (W/w) is announced on idem:settled:<key>.
// KEYS[1]; ARGV: 1 token, 2 final status C|F|X, 3 result or error, 4 ttl ms.
inline constexpr std::string_view kFinishScript = R"lua(
local k = KEYS[1]
local old = redis.call('GET', k)
if not old then return 0 end
if string.byte(old, 1) == 123 then return 3 end
local s, t, a, f, m, x, le, ly, lp, lr, lx, lkn, lkd, pos = string.match(old,
  '^(%u),(%d+),(%d+),(%d+),%d*,%d*,(%a),(%d+);(%d+),(%d+),(%d+),(%d*),(%d*),(%d*),(%d*);()')
local ms = 0
if s then
  ms = math.floor(tonumber(t) / 1000)
  f = ms - tonumber(f)
else
  s, t, a, f, m, le, ly, lp, lr, lx, lkn, lkd, pos = string.match(old,
    '^(%u),(%d+),(%d+),(%d+),%d*,%d*,(%a);(%d+),(%d+),(%d+),(%d*),(%d*),(%d*),(%d*);()')
  if not s then return redis.error_reply('IDEMCORRUPT the value is not an idem record') end
  ms = math.floor(tonumber(t) / 1000)
  f = tonumber(f)
end
if t ~= ARGV[1] then return -1 end
local want = ARGV[2]
if s ~= 'P' then
  if s == want then return -2 end
  return -3
end
local tm = redis.call('TIME')
local now = tonumber(tm[1]) * 1000 + math.floor(tonumber(tm[2]) / 1000)
local exp = now + tonumber(ARGV[4])
-- Values: event id (mode e only), type and fingerprint are kept; the old
-- result and error are dropped; the checkpoint is kept.
local blob = m == 'e' or m == 'w'
local n = tonumber(ly) + tonumber(lp)
if blob then n = n + tonumber(le) end
local skip = n
if lr ~= '' then skip = skip + tonumber(lr) end
if lx ~= '' then skip = skip + tonumber(lx) end
local value = ARGV[3]
local rl, xl = #value, ''
if want ~= 'C' then rl, xl = '', #value end
local mode = 'E'
if blob then mode = 'e' end
local rec = want .. ',' .. t .. ',' .. a .. ',' .. string.format('%.0f', ms - f) .. ',,' ..
  string.format('%.0f', now - f) .. ',' .. mode .. ',' .. string.format('%.0f', exp - f) .. ';' ..
  le .. ',' .. ly .. ',' .. lp .. ',' .. rl .. ',' .. xl .. ',' .. lkn .. ',' .. lkd .. ';' ..
  string.sub(old, pos, pos + n - 1) .. value .. string.sub(old, pos + skip)
redis.call('SET', k, rec, 'PXAT', string.format('%.0f', exp))
-- pcall: a user without +publish still completes (its waiters poll).
if m == 'W' or m == 'w' then redis.pcall('PUBLISH', 'idem:settled:' .. k, want) end
return 1
)lua";

// The common case of complete and fail, priced like GET + SET: the client
// still holds the exact record its plain-SET claim wrote, so when the key
// holds those very bytes (same token, still PROCESSING, nobody extended,
// checkpointed or waits on it) the finished record, built by the client, can
// replace it as is. Anything else answers 2 and the client sends
// kFinishScript. KEYS[1]; ARGV: 1 the record as claimed, 2 the finished
// record, 3 its expiry (ms since the epoch).
inline constexpr std::string_view kSwapScript = R"lua(
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 2 end
redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3])
return 1
)lua";

// KEYS[1]; ARGV: 1 token, 2 lease ms. Extending is idempotent (same effect
// when repeated), so it is safe to retry.
inline constexpr std::string_view kExtendScript = R"lua(
local k = KEYS[1]
local old = redis.call('GET', k)
if not old then return 0 end
if string.byte(old, 1) == 123 then return 3 end
local R = parse(old)
if not R then return corrupt() end
if R.t ~= ARGV[1] then return -1 end
if R.s ~= 'P' then return -3 end
local until_ms = now_ms() + tonumber(ARGV[2])
R.l = fmt(until_ms)
ensure_exp(R, k, until_ms)
if R.exp < until_ms then R.exp = until_ms end
redis.call('SET', k, pack(R), 'PXAT', fmt(R.exp))
return 1
)lua";

// KEYS[1]; ARGV: 1 token, 2 name, 3 data.
inline constexpr std::string_view kCheckpointScript = R"lua(
local k = KEYS[1]
local old = redis.call('GET', k)
if not old then return 0 end
if string.byte(old, 1) == 123 then return 3 end
local R = parse(old)
if not R then return corrupt() end
if R.t ~= ARGV[1] then return -1 end
if R.s ~= 'P' then return -3 end
R.kn = ARGV[2]
R.kd = ARGV[3]
ensure_exp(R, k, tonumber(R.l))
redis.call('SET', k, pack(R), 'PXAT', fmt(R.exp))
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

// A waiter's mark, after the prelude: like get, and when the record is
// PROCESSING under a live lease, flag it (M -> W/w) so that complete/fail
// PUBLISH idem:settled:<key>. KEYS[1].
inline constexpr std::string_view kWatchScript = R"lua(
local k = KEYS[1]
local v = redis.call('GET', k)
if not v then return false end
local R = parse(v)
if R and R.s == 'P' and tonumber(R.l) > now_ms() and (R.m == 'E' or R.m == 'e') then
  if R.m == 'E' then R.m = 'W' else R.m = 'w' end
  ensure_exp(R, k, tonumber(R.l))
  v = pack(R)
  redis.call('SET', k, v, 'PXAT', fmt(R.exp))
end
return {redis.call('PEXPIRETIME', k), v}
)lua";

// complete, fail, extend and checkpoint of a JSON record (json_layout.h),
// parsed with the cjson of Redis scripting. Only the members an owner
// changes are touched; the result is never parsed: the client sends the
// JSON text of the "result" and "error" members, appended as they are.
// KEYS[1]; ARGV: 1 token, 2 op: C|F|X finish, E extend, K checkpoint;
// 3 C/F/X: the result and error members, E: lease ms, K: checkpoint JSON;
// 4 C/F/X: ttl ms.
inline constexpr std::string_view kJsonOwnerScript = R"lua(
local k = KEYS[1]
local old = redis.call('GET', k)
if not old then return 0 end
if string.byte(old, 1) ~= 123 then return 3 end
local ok, R = pcall(cjson.decode, old)
if not ok or type(R) ~= 'table' or type(R.status) ~= 'string' then
  return redis.error_reply('IDEMCORRUPT the value is not an idem record')
end
if R.token ~= ARGV[1] then return -1 end
local op = ARGV[2]
local tm = redis.call('TIME')
local now = tonumber(tm[1]) * 1000 + math.floor(tonumber(tm[2]) / 1000)
local function fmt(n) return string.format('%.0f', n) end
if R.status ~= 'PROCESSING' then
  if (op == 'C' and R.status == 'COMPLETED') or (R.status == 'FAILED' and
      ((op == 'F' and R.retryable ~= false) or (op == 'X' and R.retryable == false))) then return -2 end
  return -3
end
if op == 'E' then
  R.lease_expires_at_ms = now + tonumber(ARGV[3])
  if R.expires_at_ms < R.lease_expires_at_ms then R.expires_at_ms = R.lease_expires_at_ms end
  redis.call('SET', k, cjson.encode(R), 'PXAT', fmt(R.expires_at_ms))
  return 1
end
if op == 'K' then
  R.checkpoint = cjson.decode(ARGV[3])
  redis.call('SET', k, cjson.encode(R), 'PXAT', fmt(R.expires_at_ms))
  return 1
end
-- ISO 8601 of `now` (UTC, ms), as the original module's model reads it.
local s = math.floor(now / 1000)
local z = math.floor(s / 86400) + 719468
local sod = s % 86400
local era = math.floor(z / 146097)
local doe = z - era * 146097
local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
local mp = math.floor((5 * doy + 2) / 153)
local d = doy - math.floor((153 * mp + 2) / 5) + 1
local m = mp + 3
if mp >= 10 then m = mp - 9 end
local y = yoe + era * 400
if m <= 2 then y = y + 1 end
local watched = R.watched
if op == 'C' then R.status = 'COMPLETED' else R.status = 'FAILED' end
R.retryable = op ~= 'X'
R.completed_at = string.format('%04d-%02d-%02dT%02d:%02d:%02d.%03d+00:00', y, m, d, math.floor(sod / 3600),
  math.floor(sod / 60) % 60, sod % 60, now % 1000)
R.lease_expires_at_ms = now
R.expires_at_ms = now + tonumber(ARGV[4])
R.watched = nil
R.result = nil
R.error = nil
R.error_base64 = nil
local body = cjson.encode(R)
redis.call('SET', k, string.sub(body, 1, -2) .. ',' .. ARGV[3] .. '}', 'PXAT', fmt(R.expires_at_ms))
if watched then redis.pcall('PUBLISH', 'idem:settled:' .. k, op) end
return 1
)lua";

// Script is one script with its SHA-1 (what EVALSHA names it by).
struct Script {
  std::string body;
  std::string sha;
};

enum ScriptId : std::size_t { kClaim, kFinish, kSwap, kExtend, kCheckpoint, kGet, kWatch, kJsonOwner, kScriptCount };

// scripts() is every script, built and hashed once.
const std::array<Script, kScriptCount>& scripts();

}  // namespace idem::redis_detail
