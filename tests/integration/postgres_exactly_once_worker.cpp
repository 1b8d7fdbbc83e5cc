// The worker process of postgres_exactly_once_test: handles deliveries with
// PostgresTransactionalProcessor, writing one business row per execution in
// the handler's transaction, and stops at three points of each execution to
// let the supervisor decide whether to SIGKILL it right there.
//
//   postgres_exactly_once_worker <store-url> <business-table> <worker-number>
//
// Protocol, one line each, on stdin / stdout:
//   supervisor -> worker   "D <event-id>"   handle this delivery
//                          "C"              continue after a pause
//   worker -> supervisor   "READY"          opened the store, waiting for work
//                          "P <n> <id>"     paused at point n and waits for "C":
//                                             1 in the handler, before the business write
//                                             2 after the business write, before the commit
//                                             3 after the commit
//                          "R <id> <what>"  done: executed | completed | in_progress | failed |
//                                           error:<code>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>

#include "idem/core/checker.h"
#include "idem/stores/postgres.h"

namespace {

void say(const std::string& line) { std::cout << line << '\n' << std::flush; }

// Waits for the supervisor's go-ahead; it may SIGKILL us instead.
void pause_at(int point, const std::string& id) {
  say("P " + std::to_string(point) + " " + id);
  std::string reply;
  if (!std::getline(std::cin, reply) || reply != "C") std::_Exit(3);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: postgres_exactly_once_worker <store-url> <business-table> <worker-number>\n";
    return 2;
  }
  const std::string table = argv[2];
  const std::string worker = argv[3];
  auto store = idem::PostgresStore::open(argv[1]);
  if (!store) {
    std::cerr << "worker " << worker << ": " << store.error().to_string() << "\n";
    return 1;
  }
  // A short lease, renewed by the heartbeat while the handler runs: a
  // killed worker's keys are taken over 300 ms after it died.
  auto checker =
      std::make_shared<idem::IdempotencyChecker>(*store, idem::CheckerOptions{.lease = std::chrono::milliseconds(300)});
  idem::PostgresTransactionalProcessor processor(checker, {.scope = "ledger"});
  const std::string insert = "INSERT INTO " + table + " (key, worker, token) VALUES ($1, $2, $3) RETURNING id";
  say("READY");
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line.rfind("D ", 0) != 0) continue;
    const std::string id = line.substr(2);
    idem::Envelope envelope;
    envelope.event_id = id;
    envelope.event_type = "ledger.entry";
    envelope.payload = R"({"entry":")" + id + R"("})";
    std::string what;
    try {
      idem::TransactionalOutcome out =
          processor.process(envelope, [&](idem::PostgresTransaction& tx, idem::ProcessingContext& ctx) {
            pause_at(1, id);
            idem::PostgresRows row = tx.exec(insert, {ctx.key(), worker, std::to_string(ctx.token())}).value();
            pause_at(2, id);
            // The result is the business row's id: the record and the row
            // can only agree if they were committed together.
            return std::string(row.value(0, 0).value_or(""));
          });
      switch (out.status) {
        case idem::ClaimStatus::kAcquired:
          pause_at(3, id);
          what = "executed";
          break;
        case idem::ClaimStatus::kCompleted: what = "completed"; break;
        case idem::ClaimStatus::kInProgress: what = "in_progress"; break;
        default: what = "failed"; break;
      }
    } catch (const idem::IdemError& e) {
      what = "error:" + std::string(idem::to_string(e.code()));
    } catch (const std::exception& e) {
      what = "error:other";
    }
    say("R " + id + " " + what);
  }
  return 0;
}
