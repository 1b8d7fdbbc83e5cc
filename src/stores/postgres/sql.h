// File: src/stores/postgres/sql.h
//
// The SQL of the PostgreSQL store, in one place so that the store and the raw
// libpq baseline benchmark (bench/postgres_bench.cpp) run exactly the same
// statements against exactly the same schema.
//
// Texts use two placeholders, replaced once per store by render():
//   {S}  the schema, as a quoted identifier ("idem")
//   {C}  the NOTIFY channel, as a string literal ('idem_settled_idem')
//
// Time is the server's: statement_timestamp() is the one clock every process
// and host agrees on. Durations arrive as bigint milliseconds. Every
// statement is prepared once per connection with binary parameters and
// binary results.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace idem::postgres_sql {

// Bumped with every migration below; a schema with a higher version was
// written by a newer Idem and is refused.
inline constexpr int kSchemaVersion = 1;

// Postgres type OIDs of the parameters (pg_type.h is a server header).
inline constexpr unsigned kBool = 16;
inline constexpr unsigned kBytea = 17;
inline constexpr unsigned kInt8 = 20;
inline constexpr unsigned kText = 25;
inline constexpr unsigned kTextArray = 1009;
inline constexpr unsigned kInt8Array = 1016;

// Run before any migration, outside the advisory lock: whether the version
// table exists, then what it holds (two statements: a query naming a missing
// table fails to parse even in a branch that would not run).
inline constexpr std::string_view kVersionTableExists = "SELECT to_regclass('{S}.schema_version') IS NOT NULL";
inline constexpr std::string_view kReadVersion = "SELECT coalesce(max(version), 0) FROM {S}.schema_version";
inline constexpr std::string_view kSchemaExists = "SELECT to_regnamespace('{S}') IS NOT NULL";
inline constexpr std::string_view kCreateSchema = "CREATE SCHEMA IF NOT EXISTS {S}";
// Serializes processes that migrate the same schema at the same moment.
inline constexpr std::string_view kMigrationLock = "SELECT pg_advisory_xact_lock(hashtext('idem-migrate:' || '{S}'))";
inline constexpr std::string_view kCreateVersionTable = R"sql(
CREATE TABLE IF NOT EXISTS {S}.schema_version (
  version    integer PRIMARY KEY,
  applied_at timestamptz NOT NULL DEFAULT now()
)
)sql";

// Migration n (1-based) brings the schema from version n-1 to n.
//
// Version 1. Tokens come from one sequence (CACHE 1, so values are handed
// out in real-time order across sessions): a token drawn after a row was
// deleted is above every token that row ever had, which is how tokens keep
// increasing across deletes and expiry (with the claim lock below closing
// the gap between drawing a fresh row's token and inserting it). `key` sorts bytewise (COLLATE "C"),
// like every other store, for list's keyset pages. `waiters` is set by a
// duplicate waiting in wait_settled(), so that only completions somebody waits
// for pay for a NOTIFY. `completed_in_tx` marks a completion committed in the
// handler's own transaction (transactional mode).
inline constexpr std::array<std::string_view, kSchemaVersion> kMigrations = {R"sql(
CREATE SEQUENCE IF NOT EXISTS {S}.tokens AS bigint CACHE 1;
CREATE TABLE IF NOT EXISTS {S}.records (
  key              text COLLATE "C" PRIMARY KEY,
  event_id         text NOT NULL,
  event_type       text NOT NULL,
  status           text NOT NULL CHECK (status IN ('PROCESSING', 'COMPLETED', 'FAILED')),
  result           bytea,
  error            bytea,
  retryable        boolean NOT NULL DEFAULT true,
  first_seen_at    timestamptz NOT NULL,
  completed_at     timestamptz,
  attempt          integer NOT NULL,
  token            bigint NOT NULL,
  lease_expires_at timestamptz NOT NULL,
  fingerprint      text NOT NULL DEFAULT '',
  expires_at       timestamptz NOT NULL,
  checkpoint_name  bytea,
  checkpoint_data  bytea,
  acquire_kind     smallint NOT NULL DEFAULT 0,
  waiters          boolean NOT NULL DEFAULT false,
  completed_in_tx  boolean NOT NULL DEFAULT false
);
CREATE INDEX IF NOT EXISTS records_expires_at_idx ON {S}.records (expires_at);
INSERT INTO {S}.schema_version (version) VALUES (1);
)sql"};

// The record columns in the order decode_record() reads them.
#define IDEM_PG_RECORD_COLUMNS                                                                                 \
  "key, event_id, event_type, status, result, error, retryable, first_seen_at, completed_at, attempt, token, " \
  "lease_expires_at, fingerprint, expires_at, checkpoint_name, checkpoint_data"
inline constexpr std::size_t kRecordColumns = 16;

// The claim lock of a key: a transaction-scoped advisory lock that every
// claim takes before it draws a token, and holds until it commits. Without
// it a brand-new row's token (drawn when the INSERT builds the row, before
// the conflict check) could be overtaken: another claim inserts the key with
// a later token, the key is removed or swept, and then our insert lands with
// the older token, so a later life would carry a lower token than an earlier
// one. Under the lock, the claims of a key draw and commit one after the
// other, and remove/sweep need not take it (they create no token). The lock
// space is (a hash of the schema, a hash of the key): schemas do not
// contend, and two keys sharing a hash only wait for each other. Duplicates
// that `blocked` turns away never take it.
#define IDEM_PG_CLAIM_LOCK(key) "pg_advisory_xact_lock(hashtext('idem-claim:{S}'), hashtext(" key ")) IS NOT NULL"

// The takeover of an existing row, shared by kClaimSql and kClaimBatchSql:
// `r` is the row as locked, `excluded` the row offered. An expired row
// starts a new life (attempt 1, nothing carried over).
#define IDEM_PG_CLAIM_UPDATE                                                                                           \
  "    token            = nextval('{S}.tokens'),\n"                                                                    \
  "    event_id         = CASE WHEN r.expires_at <= statement_timestamp() THEN excluded.event_id ELSE r.event_id "     \
  "END,\n"                                                                                                             \
  "    event_type       = CASE WHEN r.expires_at <= statement_timestamp() THEN excluded.event_type ELSE r.event_type " \
  "END,\n"                                                                                                             \
  "    status           = 'PROCESSING',\n"                                                                             \
  "    result           = NULL,\n"                                                                                     \
  "    error            = NULL,\n"                                                                                     \
  "    retryable        = true,\n"                                                                                     \
  "    first_seen_at    = CASE WHEN r.expires_at <= statement_timestamp() THEN excluded.first_seen_at\n"               \
  "                            ELSE r.first_seen_at END,\n"                                                            \
  "    completed_at     = NULL,\n"                                                                                     \
  "    attempt          = CASE WHEN r.expires_at <= statement_timestamp() THEN 1 ELSE r.attempt + 1 END,\n"            \
  "    lease_expires_at = excluded.lease_expires_at,\n"                                                                \
  "    fingerprint      = CASE WHEN r.expires_at <= statement_timestamp() OR excluded.fingerprint <> ''\n"             \
  "                            THEN excluded.fingerprint ELSE r.fingerprint END,\n"                                    \
  "    expires_at       = excluded.expires_at,\n"                                                                      \
  "    checkpoint_name  = CASE WHEN r.expires_at <= statement_timestamp() THEN NULL ELSE r.checkpoint_name END,\n"     \
  "    checkpoint_data  = CASE WHEN r.expires_at <= statement_timestamp() THEN NULL ELSE r.checkpoint_data END,\n"     \
  "    acquire_kind     = CASE WHEN r.expires_at <= statement_timestamp() THEN 0\n"                                    \
  "                            WHEN r.status = 'PROCESSING' THEN 1 ELSE 2 END,\n"                                      \
  "    completed_in_tx  = false\n"                                                                                     \
  "  WHERE r.expires_at <= statement_timestamp()\n"                                                                    \
  "     OR (((r.status = 'PROCESSING' AND r.lease_expires_at <= statement_timestamp())\n"                              \
  "          OR (r.status = 'FAILED' AND r.retryable))\n"                                                              \
  "         AND (excluded.fingerprint = '' OR r.fingerprint = '' OR r.fingerprint = excluded.fingerprint))\n"

// The claim: one statement, one round trip. $1 key, $2 event_id,
// $3 event_type, $4 fingerprint ('' = unchecked), $5 lease ms, $6 ttl ms.
//
// `cur` reads the record and `blocked` says whether it bars this claim
// (live and not acquirable: finished, busy or another payload). The INSERT
// runs only when nothing bars it, so a duplicate of a finished or busy key is
// a pure read: no row lock, no write. When it does run, ON CONFLICT re-checks
// acquirability on the latest row version under its lock. Before anything
// is drawn the claim takes the key's claim lock (IDEM_PG_CLAIM_LOCK; the
// CASE makes it run only when nothing bars the claim), so every token of a
// key, fresh row or takeover, is drawn after the previous life's claim
// committed, whatever was deleted in between. The answer is one row: the
// acquired record, or the record as it stood with acquired = false and the
// SQL's own verdict in `blocked`. No row, or a row neither acquired nor
// blocked, means `cur`'s snapshot was overtaken by a concurrent change (the
// row appeared, or changed before the lock): the caller claims again.
inline constexpr std::string_view kClaimSql = R"sql(
WITH cur AS (
  SELECT * FROM {S}.records WHERE key = $1
), blocked AS (
  SELECT 1 FROM cur c
  WHERE c.expires_at > statement_timestamp()
    AND NOT (((c.status = 'PROCESSING' AND c.lease_expires_at <= statement_timestamp())
              OR (c.status = 'FAILED' AND c.retryable))
             AND ($4 = '' OR c.fingerprint = '' OR c.fingerprint = $4))
), ins AS (
  INSERT INTO {S}.records AS r (key, event_id, event_type, status, retryable, first_seen_at, attempt, token,
                                lease_expires_at, fingerprint, expires_at, acquire_kind)
  SELECT $1, $2, $3, 'PROCESSING', true, statement_timestamp(), 1, nextval('{S}.tokens'),
         statement_timestamp() + $5 * interval '1 millisecond', $4,
         statement_timestamp() + greatest($5, $6) * interval '1 millisecond', 0
  WHERE CASE WHEN EXISTS (SELECT 1 FROM blocked) THEN false ELSE )sql" IDEM_PG_CLAIM_LOCK("$1") R"sql( END
  ON CONFLICT (key) DO UPDATE SET )sql" IDEM_PG_CLAIM_UPDATE R"sql(
  RETURNING r.*
)
SELECT )sql" IDEM_PG_RECORD_COLUMNS R"sql(, acquire_kind, true, false FROM ins
UNION ALL
SELECT )sql" IDEM_PG_RECORD_COLUMNS R"sql(, acquire_kind, false, EXISTS (SELECT 1 FROM blocked) FROM cur
WHERE NOT EXISTS (SELECT 1 FROM ins)
)sql";
inline constexpr std::size_t kClaimColumns = kRecordColumns + 3;

// The batch claim (claim_many): the same decision as kClaimSql for many
// distinct keys in one set-based statement, so that a batch costs one
// executor start, one plan and one commit instead of one each per key.
// $1 keys, $2 event ids, $3 event types, $4 fingerprints (text[]), $5 lease
// ms, $6 ttl ms (bigint[]); the caller sends each key once (repeats are
// resolved from the first occurrence's answer). Keys are locked (claim
// lock, then row) in the order of their lock's hash, so concurrent batches
// take every lock in the same order and cannot deadlock each other, not
// even through two keys that share a hash. The sorted subquery fixes that
// order: a volatile condition is never pushed below it. One answer row per
// key, as in kClaimSql, matched to the request by key.
inline constexpr std::string_view kClaimBatchSql = R"sql(
WITH req AS (
  SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[])
           AS q(key, event_id, event_type, fingerprint, lease_ms, ttl_ms)
), cur AS (
  -- One index lookup per key whatever the plan cache believes about the
  -- table's size (OFFSET 0 keeps the lookup from being flattened into a
  -- join that a plan made while the table was small runs as a full scan,
  -- once per statement of a big batch).
  SELECT r.* FROM unnest($1::text[]) AS k(key)
                  CROSS JOIN LATERAL (SELECT * FROM {S}.records WHERE key = k.key OFFSET 0) r
), blocked AS (
  SELECT c.key FROM cur c JOIN req q ON q.key = c.key
  WHERE c.expires_at > statement_timestamp()
    AND NOT (((c.status = 'PROCESSING' AND c.lease_expires_at <= statement_timestamp())
              OR (c.status = 'FAILED' AND c.retryable))
             AND (q.fingerprint = '' OR c.fingerprint = '' OR c.fingerprint = q.fingerprint))
), ins AS (
  INSERT INTO {S}.records AS r (key, event_id, event_type, status, retryable, first_seen_at, attempt, token,
                                lease_expires_at, fingerprint, expires_at, acquire_kind)
  SELECT q.key, q.event_id, q.event_type, 'PROCESSING', true, statement_timestamp(), 1, nextval('{S}.tokens'),
         statement_timestamp() + q.lease_ms * interval '1 millisecond', q.fingerprint,
         statement_timestamp() + greatest(q.lease_ms, q.ttl_ms) * interval '1 millisecond', 0
  FROM (SELECT * FROM req ORDER BY hashtext(key), key) q
  WHERE CASE WHEN EXISTS (SELECT 1 FROM blocked b WHERE b.key = q.key) THEN false
             ELSE )sql" IDEM_PG_CLAIM_LOCK("q.key") R"sql( END
  ORDER BY hashtext(q.key), q.key
  ON CONFLICT (key) DO UPDATE SET )sql" IDEM_PG_CLAIM_UPDATE R"sql(
  RETURNING r.*
)
SELECT )sql" IDEM_PG_RECORD_COLUMNS R"sql(, acquire_kind, true, false FROM ins
UNION ALL
SELECT )sql" IDEM_PG_RECORD_COLUMNS R"sql(, acquire_kind, false, EXISTS (SELECT 1 FROM blocked b WHERE b.key = c.key)
FROM cur c
WHERE NOT EXISTS (SELECT 1 FROM ins i WHERE i.key = c.key)
)sql";

// The NOTIFY payload: the key, unless it is too long for a payload (then ''
// wakes every waiter of this store, who each re-read their own key).
#define IDEM_PG_NOTIFY_PAYLOAD "CASE WHEN octet_length($1) < 7900 THEN $1 ELSE '' END"

// Owner-only updates: $1 key, $2 token. A record past its expiry is gone as
// far as anyone can tell, so its owner has lost it too. The first column is
// 1 when written; complete() also answers 2 when this very token already
// completed the record in its own transaction (transactional mode's
// confirmation, see complete_in_transaction). Waiters are woken by NOTIFY,
// which PostgreSQL delivers at commit.
// complete: $3 result, $4 ttl ms, $5 completed in the handler's transaction.
inline constexpr std::string_view kCompleteSql = R"sql(
WITH u AS (
  UPDATE {S}.records
     SET status = 'COMPLETED', result = $3, error = NULL, completed_at = statement_timestamp(),
         expires_at = statement_timestamp() + $4 * interval '1 millisecond', completed_in_tx = $5
   WHERE key = $1 AND token = $2 AND status = 'PROCESSING' AND expires_at > statement_timestamp()
  RETURNING waiters
)
SELECT CASE WHEN EXISTS (SELECT 1 FROM u) THEN 1
            WHEN NOT $5 AND EXISTS (SELECT 1 FROM {S}.records
                                    WHERE key = $1 AND token = $2 AND status = 'COMPLETED' AND completed_in_tx) THEN 2
            ELSE 0 END,
       (SELECT count(*) FROM (SELECT pg_notify({C}, )sql" IDEM_PG_NOTIFY_PAYLOAD R"sql() FROM u WHERE u.waiters) n)
)sql";

// fail: $3 error, $4 ttl ms, $5 retryable.
inline constexpr std::string_view kFailSql = R"sql(
WITH u AS (
  UPDATE {S}.records
     SET status = 'FAILED', error = $3, result = NULL, completed_at = statement_timestamp(),
         expires_at = statement_timestamp() + $4 * interval '1 millisecond', retryable = $5
   WHERE key = $1 AND token = $2 AND status = 'PROCESSING' AND expires_at > statement_timestamp()
  RETURNING waiters
)
SELECT CASE WHEN EXISTS (SELECT 1 FROM u) THEN 1 ELSE 0 END,
       (SELECT count(*) FROM (SELECT pg_notify({C}, )sql" IDEM_PG_NOTIFY_PAYLOAD R"sql() FROM u WHERE u.waiters) n)
)sql";

// extend: $3 lease ms. The record never expires under a live lease.
inline constexpr std::string_view kExtendSql = R"sql(
UPDATE {S}.records
   SET lease_expires_at = statement_timestamp() + $3 * interval '1 millisecond',
       expires_at = greatest(expires_at, statement_timestamp() + $3 * interval '1 millisecond')
 WHERE key = $1 AND token = $2 AND status = 'PROCESSING' AND expires_at > statement_timestamp()
)sql";

// checkpoint: $3 name, $4 data.
inline constexpr std::string_view kCheckpointSql = R"sql(
UPDATE {S}.records SET checkpoint_name = $3, checkpoint_data = $4
 WHERE key = $1 AND token = $2 AND status = 'PROCESSING' AND expires_at > statement_timestamp()
)sql";

inline constexpr std::string_view kGetSql =
    "SELECT " IDEM_PG_RECORD_COLUMNS " FROM {S}.records WHERE key = $1 AND expires_at > statement_timestamp()";

// remove: answers whether a live record was deleted. No token floor to
// raise: the sequence is the floor.
inline constexpr std::string_view kRemoveSql = R"sql(
WITH d AS (
  DELETE FROM {S}.records WHERE key = $1 RETURNING expires_at > statement_timestamp() AS live, waiters
)
SELECT (SELECT count(*) FROM d WHERE d.live),
       (SELECT count(*) FROM (SELECT pg_notify({C}, )sql" IDEM_PG_NOTIFY_PAYLOAD R"sql() FROM d WHERE d.waiters) n)
)sql";

// Keyset pagination over the primary key: $1 cursor (exclusive), $2 prefix
// (inclusive lower bound), $3 status or NULL, $4 minimum age in ms or NULL,
// $5 limit, and in kScanBounded $6 the prefix's upper bound (exclusive), so
// the index range ends where the prefix does.
#define IDEM_PG_SCAN_HEAD                                                         \
  "SELECT " IDEM_PG_RECORD_COLUMNS                                                \
  " FROM {S}.records WHERE key > $1 AND key >= $2 "                               \
  "AND expires_at > statement_timestamp() AND ($3::text IS NULL OR status = $3) " \
  "AND ($4::bigint IS NULL OR first_seen_at <= statement_timestamp() - $4 * interval '1 millisecond') "
inline constexpr std::string_view kScanSql = IDEM_PG_SCAN_HEAD "ORDER BY key LIMIT $5";
inline constexpr std::string_view kScanBoundedSql = IDEM_PG_SCAN_HEAD "AND key < $6 ORDER BY key LIMIT $5";

inline constexpr std::string_view kCountByStatusSql =
    "SELECT status, count(*) FROM {S}.records WHERE expires_at > statement_timestamp() GROUP BY status";
inline constexpr std::string_view kOldestProcessingSql =
    "SELECT " IDEM_PG_RECORD_COLUMNS
    " FROM {S}.records WHERE status = 'PROCESSING' AND expires_at > statement_timestamp()"
    " ORDER BY first_seen_at, key LIMIT 1";
inline constexpr std::string_view kTableBytesSql = "SELECT pg_total_relation_size('{S}.records'::regclass)";

// One sweep batch: $1 batch size. SKIP LOCKED lets several sweepers (and
// claims) run side by side; the outer condition re-checks expiry on the row
// version that is deleted, so a record revived meanwhile stays.
inline constexpr std::string_view kSweepBatchSql = R"sql(
WITH d AS (
  DELETE FROM {S}.records
   WHERE key IN (SELECT key FROM {S}.records WHERE expires_at <= statement_timestamp()
                  ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED)
     AND expires_at <= statement_timestamp()
  RETURNING 1
)
SELECT count(*) FROM d
)sql";

inline constexpr std::string_view kPingSql = "SELECT 1";

// A duplicate that waits: flags the record so that its completion sends a
// NOTIFY, and reads it under the row lock, so a completion either sees the
// flag or happened before this statement (then nothing is returned).
inline constexpr std::string_view kRegisterWaiterSql = R"sql(
UPDATE {S}.records SET waiters = true
 WHERE key = $1 AND status = 'PROCESSING' AND lease_expires_at > statement_timestamp()
   AND expires_at > statement_timestamp()
RETURNING )sql" IDEM_PG_RECORD_COLUMNS;

#undef IDEM_PG_SCAN_HEAD
#undef IDEM_PG_CLAIM_UPDATE
#undef IDEM_PG_CLAIM_LOCK
#undef IDEM_PG_NOTIFY_PAYLOAD
#undef IDEM_PG_RECORD_COLUMNS

// The prepared statements of a store connection, with their parameter types.
enum class Stmt : std::uint8_t {
  kClaim,
  kClaimBatch,
  kComplete,
  kFail,
  kExtend,
  kCheckpoint,
  kGet,
  kRemove,
  kScan,
  kScanBounded,
  kCountByStatus,
  kOldestProcessing,
  kTableBytes,
  kSweepBatch,
  kPing,
  kRegisterWaiter,
  kCount,
};

struct StatementDef {
  std::string_view name;  // the prepared statement's name
  std::string_view text;
  std::array<unsigned, 6> types;
  int params;
};

inline constexpr std::array<StatementDef, static_cast<std::size_t>(Stmt::kCount)> kStatements = {{
    {"idem_claim", kClaimSql, {kText, kText, kText, kText, kInt8, kInt8}, 6},
    {"idem_claim_batch", kClaimBatchSql, {kTextArray, kTextArray, kTextArray, kTextArray, kInt8Array, kInt8Array}, 6},
    {"idem_complete", kCompleteSql, {kText, kInt8, kBytea, kInt8, kBool}, 5},
    {"idem_fail", kFailSql, {kText, kInt8, kBytea, kInt8, kBool}, 5},
    {"idem_extend", kExtendSql, {kText, kInt8, kInt8}, 3},
    {"idem_checkpoint", kCheckpointSql, {kText, kInt8, kBytea, kBytea}, 4},
    {"idem_get", kGetSql, {kText}, 1},
    {"idem_remove", kRemoveSql, {kText}, 1},
    {"idem_scan", kScanSql, {kText, kText, kText, kInt8, kInt8}, 5},
    {"idem_scan_bounded", kScanBoundedSql, {kText, kText, kText, kInt8, kInt8, kText}, 6},
    {"idem_count_by_status", kCountByStatusSql, {}, 0},
    {"idem_oldest_processing", kOldestProcessingSql, {}, 0},
    {"idem_table_bytes", kTableBytesSql, {}, 0},
    {"idem_sweep_batch", kSweepBatchSql, {kInt8}, 1},
    {"idem_ping", kPingSql, {}, 0},
    {"idem_register_waiter", kRegisterWaiterSql, {kText}, 1},
}};

inline const StatementDef& statement(Stmt s) { return kStatements[static_cast<std::size_t>(s)]; }

// render() replaces {S} with the quoted schema and {C} with the channel.
inline std::string render(std::string_view text, std::string_view schema) {
  const std::string quoted = "\"" + std::string(schema) + "\"";
  const std::string channel = "'idem_settled_" + std::string(schema) + "'";
  std::string out;
  out.reserve(text.size() + 64);
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '{' && i + 2 < text.size() && text[i + 2] == '}') {
      if (text[i + 1] == 'S') {
        out += quoted;
        i += 2;
        continue;
      }
      if (text[i + 1] == 'C') {
        out += channel;
        i += 2;
        continue;
      }
    }
    out += text[i];
  }
  return out;
}

// The LISTEN channel name, as an identifier.
inline std::string channel_identifier(std::string_view schema) {
  return "\"idem_settled_" + std::string(schema) + "\"";
}

}  // namespace idem::postgres_sql
