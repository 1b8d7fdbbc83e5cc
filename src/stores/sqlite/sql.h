// File: src/stores/sqlite/sql.h
//
// The SQL of the SQLite store, in one place so that the store and the raw
// libsqlite3 baseline benchmark (bench/stores_bench.cpp) run exactly the same
// statements against exactly the same schema.
//
// Times are integer milliseconds since the Unix epoch, read from the store's
// injected Clock and bound as parameters: SQL never reads its own clock, so
// tests can drive time with a ManualClock.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace idem::sqlite_sql {

// Bumped whenever the schema changes; a file with a higher version was written
// by a newer Idem and is refused.
inline constexpr int kSchemaVersion = 1;

// Run on every new connection (after busy_timeout is set), before
// synchronous. WAL lets readers run beside the one writer; the larger page
// cache keeps the b-tree's inner pages in memory for big tables; temporary
// b-trees (RETURNING, GROUP BY) never touch the disk.
inline constexpr std::string_view kConnectionPragmas =
    "PRAGMA journal_mode=WAL; PRAGMA cache_size=-16384; PRAGMA temp_store=MEMORY;";
inline constexpr std::string_view kSynchronousNormal = "PRAGMA synchronous=NORMAL";
inline constexpr std::string_view kSynchronousFull = "PRAGMA synchronous=FULL";

// meta holds schema_version and token_floor. token_floor is the highest token
// of any row ever deleted (remove or sweep), raised in the same transaction as
// the DELETE, so a key claimed afresh gets a token above every earlier life.
inline constexpr std::string_view kCreateSchema = R"sql(
CREATE TABLE IF NOT EXISTS meta (
  name  TEXT PRIMARY KEY,
  value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO meta(name, value) VALUES ('schema_version', 1), ('token_floor', 0);
CREATE TABLE IF NOT EXISTS records (
  key              TEXT PRIMARY KEY,
  event_id         TEXT NOT NULL,
  event_type       TEXT NOT NULL,
  status           TEXT NOT NULL,
  result           BLOB,
  error            BLOB,
  retryable        INTEGER NOT NULL,
  first_seen_at    INTEGER NOT NULL,
  completed_at     INTEGER,
  attempt          INTEGER NOT NULL,
  token            INTEGER NOT NULL,
  lease_expires_at INTEGER NOT NULL,
  fingerprint      TEXT NOT NULL,
  expires_at       INTEGER NOT NULL,
  checkpoint_name  BLOB,
  checkpoint_data  BLOB,
  acquire_kind     INTEGER NOT NULL
) WITHOUT ROWID;
)sql";

inline constexpr std::string_view kReadSchemaVersion = "SELECT value FROM meta WHERE name = 'schema_version'";
inline constexpr std::string_view kHasMeta =
    "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'";

// The record columns in the order read by every SELECT below.
#define IDEM_SQLITE_RECORD_COLUMNS                                                                             \
  "key, event_id, event_type, status, result, error, retryable, first_seen_at, completed_at, attempt, token, " \
  "lease_expires_at, fingerprint, expires_at, checkpoint_name, checkpoint_data"

// The claim: one statement, for one key or for `rows` keys at once (the
// batch claim). ?1 is now; row r (0-based) binds ?(2+6r) key, ?(3+6r)
// event_id, ?(4+6r) event_type, ?(5+6r) fingerprint ('' = unchecked),
// ?(6+6r) lease expiry, ?(7+6r) record expiry (>= the lease expiry, so a
// record never expires while its lease is live).
// In DO UPDATE every bare column is the OLD value and excluded.* the row
// offered, which is what lets one statement compute attempt+1, the acquire
// kind and the next token. acquire_kind: 0 new (absent or expired),
// 1 takeover, 2 retry. Only acquired rows come back from RETURNING.
inline constexpr std::size_t kClaimParamsPerRow = 6;

// With floor_bound, the token floor is not read by a subquery per row but
// bound once as parameter ?(2+6*rows): only valid inside a write transaction
// that read it (claim_many's BEGIN IMMEDIATE), where no one can change it.
inline std::string claim_sql(std::size_t rows, bool floor_bound = false) {
  std::string floor = "(SELECT value FROM meta WHERE name = 'token_floor')";
  if (floor_bound) {
    floor = "?";
    floor += std::to_string(2 + rows * kClaimParamsPerRow);
  }
  std::string text =
      "INSERT INTO records (key, event_id, event_type, status, result, error, retryable, first_seen_at, "
      "completed_at, attempt, token, lease_expires_at, fingerprint, expires_at, checkpoint_name, checkpoint_data, "
      "acquire_kind) VALUES ";
  for (std::size_t r = 0; r < rows; ++r) {
    const std::size_t b = 2 + r * kClaimParamsPerRow;
    // append() only: GCC 12 at -O3 warns falsely (-Wrestrict) on "?" + string.
    auto param = [&](std::size_t i, std::string_view after) {
      text += '?';
      text += std::to_string(b + i);
      text.append(after);
    };
    if (r != 0) text += ",\n";
    text += '(';
    param(0, ", ");
    param(1, ", ");
    param(2, ", 'PROCESSING', NULL, NULL, 1, ?1, NULL, 1, ");
    text += floor;
    text += " + 1, ";
    param(4, ", ");
    param(3, ", ");
    param(5, ", NULL, NULL, 0)");
  }
  text += R"sql(
ON CONFLICT (key) DO UPDATE SET
  token            = max(token, )sql";
  text += floor;
  text += R"sql() + 1,
  event_id         = CASE WHEN expires_at <= ?1 THEN excluded.event_id ELSE event_id END,
  event_type       = CASE WHEN expires_at <= ?1 THEN excluded.event_type ELSE event_type END,
  status           = 'PROCESSING',
  result           = NULL,
  error            = NULL,
  retryable        = 1,
  first_seen_at    = CASE WHEN expires_at <= ?1 THEN ?1 ELSE first_seen_at END,
  completed_at     = NULL,
  attempt          = CASE WHEN expires_at <= ?1 THEN 1 ELSE attempt + 1 END,
  lease_expires_at = excluded.lease_expires_at,
  fingerprint      = CASE WHEN expires_at <= ?1 OR excluded.fingerprint <> '' THEN excluded.fingerprint
                          ELSE fingerprint END,
  expires_at       = excluded.expires_at,
  checkpoint_name  = CASE WHEN expires_at <= ?1 THEN NULL ELSE checkpoint_name END,
  checkpoint_data  = CASE WHEN expires_at <= ?1 THEN NULL ELSE checkpoint_data END,
  acquire_kind     = CASE WHEN expires_at <= ?1 THEN 0 WHEN status = 'PROCESSING' THEN 1 ELSE 2 END
WHERE expires_at <= ?1
   OR (((status = 'PROCESSING' AND lease_expires_at <= ?1) OR (status = 'FAILED' AND retryable = 1))
       AND (excluded.fingerprint = '' OR fingerprint = '' OR fingerprint = excluded.fingerprint))
RETURNING key, token, attempt, lease_expires_at, acquire_kind, checkpoint_name, checkpoint_data
)sql";
  return text;
}

inline constexpr std::string_view kGet = "SELECT " IDEM_SQLITE_RECORD_COLUMNS " FROM records WHERE key = ?1";

// Owner-only updates: ?1 key, ?2 token, ?4 now. A record past its expiry is
// gone as far as anyone can tell, so its owner has lost it too.
inline constexpr std::string_view kComplete = R"sql(
UPDATE records SET status = 'COMPLETED', result = ?3, error = NULL, completed_at = ?4, expires_at = ?5
WHERE key = ?1 AND token = ?2 AND status = 'PROCESSING' AND expires_at > ?4
)sql";

inline constexpr std::string_view kFail = R"sql(
UPDATE records SET status = 'FAILED', error = ?3, result = NULL, completed_at = ?4, expires_at = ?5, retryable = ?6
WHERE key = ?1 AND token = ?2 AND status = 'PROCESSING' AND expires_at > ?4
)sql";

inline constexpr std::string_view kExtend = R"sql(
UPDATE records SET lease_expires_at = ?3, expires_at = max(expires_at, ?3)
WHERE key = ?1 AND token = ?2 AND status = 'PROCESSING' AND expires_at > ?4
)sql";

inline constexpr std::string_view kCheckpoint = R"sql(
UPDATE records SET checkpoint_name = ?3, checkpoint_data = ?5
WHERE key = ?1 AND token = ?2 AND status = 'PROCESSING' AND expires_at > ?4
)sql";

inline constexpr std::string_view kReadFloor = "SELECT value FROM meta WHERE name = 'token_floor'";
inline constexpr std::string_view kDelete = "DELETE FROM records WHERE key = ?1 RETURNING token, expires_at";
inline constexpr std::string_view kRaiseFloor = "UPDATE meta SET value = max(value, ?1) WHERE name = 'token_floor'";

// One sweep batch: ?1 now, ?2 batch size. Batches keep the write lock short
// so that claims from other processes are not stalled by a large sweep.
inline constexpr std::string_view kSweepBatch = R"sql(
DELETE FROM records WHERE key IN (SELECT key FROM records WHERE expires_at <= ?1 LIMIT ?2) RETURNING token
)sql";

// Keyset pagination: ?1 cursor (exclusive), ?2 now, ?3 status or NULL,
// ?4 first_seen cutoff or NULL, ?5 prefix (inclusive lower bound),
// ?6 prefix upper bound or NULL, ?7 limit.
inline constexpr std::string_view kScan = "SELECT " IDEM_SQLITE_RECORD_COLUMNS R"sql(
 FROM records
WHERE key > ?1 AND key >= ?5 AND (?6 IS NULL OR key < ?6) AND expires_at > ?2
  AND (?3 IS NULL OR status = ?3) AND (?4 IS NULL OR first_seen_at <= ?4)
ORDER BY key LIMIT ?7
)sql";

inline constexpr std::string_view kCountByStatus =
    "SELECT status, count(*) FROM records WHERE expires_at > ?1 GROUP BY status";
inline constexpr std::string_view kOldestProcessing =
    "SELECT " IDEM_SQLITE_RECORD_COLUMNS
    " FROM records WHERE status = 'PROCESSING' AND expires_at > ?1 ORDER BY first_seen_at, key LIMIT 1";
// One record's share of the file: its column bytes (TEXT cast to BLOB, so
// length() counts bytes), eight integer columns at up to 8 bytes, and the
// record header and B-tree cell around them (about 28 bytes). The table is
// WITHOUT ROWID with no other index, so the key is stored once.
inline constexpr std::string_view kRecordBytes = R"sql(
SELECT length(CAST(key AS BLOB)) + length(CAST(event_id AS BLOB)) + length(CAST(event_type AS BLOB))
     + length(CAST(status AS BLOB)) + coalesce(length(result), 0) + coalesce(length(error), 0)
     + length(CAST(fingerprint AS BLOB)) + coalesce(length(checkpoint_name), 0)
     + coalesce(length(checkpoint_data), 0) + 8 * 8 + 28
FROM records WHERE key = ?1 AND expires_at > ?2
)sql";

inline constexpr std::string_view kFileSize =
    "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()";

inline constexpr std::string_view kBegin = "BEGIN IMMEDIATE";
inline constexpr std::string_view kCommit = "COMMIT";
inline constexpr std::string_view kRollback = "ROLLBACK";

#undef IDEM_SQLITE_RECORD_COLUMNS

}  // namespace idem::sqlite_sql
