// File: tests/consumer/main.cpp
//
// The packaging smoke test: a program built outside the Idem tree, against
// the installed headers and libraries only. It claims and completes one event
// on a memory store, checks that a redelivery is a duplicate that replays the
// result, and opens a SQLite store (the path is argv[1]) to prove that the
// sqlite component links with its dependency. Exit 0 means it all worked.
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "idem/idem.h"
#include "idem/stores/memory.h"
#include "idem/stores/sqlite.h"
#ifdef IDEM_CONSUMER_POSTGRES
#include "idem/stores/postgres.h"
#endif

namespace {

void require(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "consumer: FAILED: %s\n", what);
  std::exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  auto checker = std::make_shared<idem::IdempotencyChecker>(idem::MemoryStore::create());
  const std::string result = R"({"done":true})";

  auto envelope = idem::Envelope::parse(R"({"event_id":"evt-1","event_type":"demo","payload":{"n":1}})");
  require(envelope.ok(), "parse an envelope");

  auto first = checker->mark_processing(*envelope);
  require(first.ok() && first->outcome.acquired(), "the first delivery acquires the key");
  require(checker->mark_completed(first->key, first->outcome.token, result).ok(), "mark_completed");

  auto again = checker->mark_processing(*envelope);
  require(again.ok() && again->outcome.status == idem::ClaimStatus::kCompleted, "a redelivery is a duplicate");
  require(again->outcome.record && again->outcome.record->result == result, "the duplicate replays the result");

  if (argc > 1) {
    auto sqlite = idem::SqliteStore::create({.path = argv[1]});
    if (!sqlite) std::fprintf(stderr, "consumer: %s\n", sqlite.error().to_string().c_str());
    require(sqlite.ok(), "open a SQLite store");
    require((*sqlite)->ping().ok(), "ping the SQLite store");
  }
#ifdef IDEM_CONSUMER_POSTGRES
  // The postgres component links (libpq by name) and its header is usable;
  // no server is needed to parse a URL.
  auto pg = idem::PostgresStore::parse_url("postgresql://app:secret@db:5432/orders?schema=idem&sslmode=verify-full");
  require(pg.ok() && pg->schema == "idem" && pg->password == "secret", "parse a PostgreSQL URL");
  require(idem::PostgresStore::redact_url("postgresql://app:secret@db/orders") == "postgresql://app:***@db/orders",
          "redact a PostgreSQL URL");
  std::printf("consumer: postgres component OK\n");
#endif
  std::printf("consumer: OK (claimed, completed and replayed through idem::core, idem::memory, idem::sqlite)\n");
  return 0;
}
