// Example 4: the manual API, with the names of the original Python module:
// is_duplicate, mark_processing, get_processing_record, mark_completed,
// mark_failed, delete_record. You claim, act and finish yourself, and see
// every outcome as a value.
//
//   example_manual_api                       # a temporary SQLite file
//   example_manual_api redis://127.0.0.1:6379
#include <cstdio>
#include <string>

#include "common/example.h"

namespace {

std::string describe(const idem::Claim& claim) {
  std::string text(idem::to_string(claim.outcome.status));
  if (claim.outcome.acquired()) {
    text += " (" + std::string(idem::to_string(claim.outcome.acquire_kind)) + ", attempt " +
            std::to_string(claim.outcome.attempt) + ", token " + std::to_string(claim.outcome.token) + ")";
  } else if (claim.outcome.record) {
    const idem::IdempotencyRecord& r = *claim.outcome.record;
    if (r.result) text += ", cached result " + *r.result;
    if (r.error) text += ", stored error \"" + *r.error + "\"";
  }
  return text;
}

}  // namespace

int main(int argc, char** argv) {
  example::Run run(argc, argv, "Example 4: the manual API (the original module's names)");
  auto checker = run.checker();
  const auto invoice = example::event("invoice-1", "invoice.issued", R"({"total_cents":5000})");

  std::printf("1. a new event: claim, act, complete\n");
  const bool seen_before = checker->is_duplicate("invoice-1").value();
  std::printf("  is_duplicate(\"invoice-1\") -> %s\n", seen_before ? "true" : "false");
  auto claim = checker->mark_processing(invoice).value();  // .value() throws StoreUnavailableError & co.
  std::printf("  mark_processing -> %s\n", describe(claim).c_str());
  const bool seen_while_processing = checker->is_duplicate("invoice-1").value();
  auto in_flight = checker->get_processing_record("invoice-1").value();
  std::printf("  while processing: is_duplicate -> %s, get_processing_record -> %s, lease until %s\n",
              seen_while_processing ? "true" : "false",
              in_flight ? std::string(idem::to_string(in_flight->status)).c_str() : "none",
              in_flight ? idem::format_rfc3339(in_flight->lease_expires_at).c_str() : "-");
  // ... the side effect goes here: write the ledger row ...
  const idem::Status completed = checker->mark_completed(claim.key, claim.outcome.token, R"({"ledger_row":17})");
  std::printf("  mark_completed -> %s\n", completed ? "ok" : completed.error().to_string().c_str());
  run.check(!seen_before && claim.outcome.acquired() && seen_while_processing && in_flight &&
                in_flight->status == idem::ProcessingStatus::kProcessing && completed.ok(),
            "the first claim acquired the key; while it ran, the key already counted as a duplicate");

  std::printf("\n2. a redelivery\n");
  auto again = checker->mark_processing(invoice).value();
  std::printf("  mark_processing -> %s\n", describe(again).c_str());
  run.check(again.outcome.status == idem::ClaimStatus::kCompleted && again.outcome.record &&
                again.outcome.record->result == R"({"ledger_row":17})",
            "a redelivery is COMPLETED with the cached result: do not run it again");

  std::printf("\n3. failures: retryable, then terminal\n");
  const auto refund = example::event("refund-1", "refund.requested", R"({"amount_cents":700})");
  auto first = checker->mark_processing(refund).value();
  checker->mark_failed(first.key, first.outcome.token, "bank API timed out", /*retryable=*/true).value();
  auto retry = checker->mark_processing(refund).value();
  std::printf("  after a retryable mark_failed, mark_processing -> %s\n", describe(retry).c_str());
  checker->mark_failed(retry.key, retry.outcome.token, "account closed", /*retryable=*/false).value();
  auto replay = checker->mark_processing(refund).value();
  std::printf("  after a terminal mark_failed, mark_processing -> %s\n", describe(replay).c_str());
  run.check(
      retry.outcome.acquired() && retry.outcome.acquire_kind == idem::AcquireKind::kRetry && retry.outcome.attempt == 2,
      "a retryable failure lets the next delivery claim the key again (a retry, attempt 2)");
  run.check(replay.outcome.status == idem::ClaimStatus::kFailed && replay.outcome.record &&
                replay.outcome.record->error == "account closed",
            "a terminal failure is replayed: FAILED, with the stored error");

  std::printf("\n4. fencing: a stale token cannot write\n");
  const idem::Status stale = checker->mark_completed(claim.key, claim.outcome.token, R"({"again":true})");
  std::printf("  mark_completed with the token of a finished claim -> %s\n",
              stale ? "ok" : stale.error().to_string().c_str());
  run.check(!stale && stale.error().code() == idem::ErrorCode::kLeaseLost,
            "completing with a token that no longer owns the key is refused (kLeaseLost)");

  std::printf("\n5. delete_record: forget an event so that it can run again\n");
  const bool deleted = checker->delete_record("invoice-1").value();
  const bool still_seen = checker->is_duplicate("invoice-1").value();
  auto fresh = checker->mark_processing(invoice).value();
  std::printf("  delete_record -> %s; is_duplicate -> %s; mark_processing -> %s\n", deleted ? "true" : "false",
              still_seen ? "true" : "false", describe(fresh).c_str());
  run.check(deleted && !still_seen && fresh.outcome.acquired() && fresh.outcome.acquire_kind == idem::AcquireKind::kNew,
            "after delete_record the event is new again");
  run.check(fresh.outcome.token > claim.outcome.token,
            "and its token is higher than any before: the old owner's token stays useless");
  checker->mark_completed(fresh.key, fresh.outcome.token, R"({"ledger_row":18})").value();
  return run.finish();
}
