"""The contract from the Python side, on SQLite and a real Redis: fencing,
mismatch, terminal failure replay, retryable failures, the decorator's
duplicate options, the guard with checkpoints, and the takeover of a Python
worker killed with SIGKILL."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import idem
from idem import (ClaimStatus, DuplicateEventError, EventEnvelope, IdempotencyChecker, IdempotentEventProcessor,
                  KeyMismatchError, LeaseLostError, ProcessingStatus, TerminalError, idempotent_event_handler,
                  process_with_idempotency)


def event(key, **payload):
    return EventEnvelope(event_id=key, event_type="test", payload=payload or {"k": key})


def test_fencing_a_stale_worker_writes_nothing(store_url, prefix):
    slow = IdempotencyChecker(store_url, key_prefix=prefix, lease_seconds=0.2)
    fast = IdempotencyChecker(store_url, key_prefix=prefix, lease_seconds=30)
    e = event("fenced")
    stale = slow.mark_processing(e)
    assert stale
    time.sleep(0.3)  # the slow worker's lease runs out
    fresh = fast.mark_processing(e)
    assert fresh and fresh.acquire_kind == idem.AcquireKind.TAKEOVER and fresh.token > stale.token
    with pytest.raises(LeaseLostError):
        slow.mark_completed(stale, {"by": "stale"})
    with pytest.raises(LeaseLostError):
        slow.checkpoint(stale, "late")
    fast.mark_completed(fresh, {"by": "fresh"})
    with pytest.raises(LeaseLostError):
        slow.mark_failed(stale, "late")
    record = fast.get_processing_record("fenced")
    assert record.result == {"by": "fresh"} and record.token == fresh.token and record.attempt == 2


def test_mismatch_on_every_pattern(checker):
    runs = []
    handler = idempotent_event_handler(lambda e: runs.append(e) or "ok", checker=checker)
    handler(event("order-1", amount=5))
    with pytest.raises(KeyMismatchError):
        handler(event("order-1", amount=500))
    assert len(runs) == 1
    claim = checker.mark_processing(event("order-1", amount=500))
    assert claim.status == ClaimStatus.MISMATCH
    with pytest.raises(KeyMismatchError):
        with IdempotentEventProcessor(checker).process(event("order-1", amount=500)):
            pass
    # The same payload written another way is the same payload.
    assert handler(EventEnvelope(event_id="order-1", event_type="test", payload='{ "amount" : 5 }')) == "ok"


def test_terminal_failure_is_replayed(checker):
    runs = []

    @idempotent_event_handler(checker=checker)
    def charge(e):
        runs.append(e.event_id)
        raise TerminalError("card declined")

    for _ in range(3):
        with pytest.raises(TerminalError, match="card declined"):
            charge(event("pay-1"))
    assert runs == ["pay-1"]
    record = checker.get_processing_record("pay-1")
    assert record.status == ProcessingStatus.FAILED and not record.retryable and record.error == "card declined"


def test_retryable_failure_runs_again(checker):
    attempts = []

    @idempotent_event_handler(checker=checker)
    def flaky(e):
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError("gateway down")
        return {"ok": len(attempts)}

    for _ in range(2):
        with pytest.raises(ConnectionError, match="gateway down"):
            flaky(event("pay-2"))
    assert checker.get_processing_record("pay-2").error == "ConnectionError: gateway down"
    assert flaky(event("pay-2")) == {"ok": 3}
    assert flaky(event("pay-2")) == {"ok": 3}
    assert len(attempts) == 3


def test_duplicate_options(checker):
    runs = []
    plain = idempotent_event_handler(lambda e: runs.append(1) or {"n": 1}, checker=checker, scope="plain")
    assert plain(event("d1")) == {"n": 1} and plain(event("d1")) == {"n": 1}
    quiet = idempotent_event_handler(lambda e: runs.append(1) or {"n": 2}, checker=checker, scope="quiet",
                                     return_cached_result=False)
    assert quiet(event("d1")) == {"n": 2} and quiet(event("d1")) is None
    strict = idempotent_event_handler(lambda e: runs.append(1) or {"n": 3}, checker=checker, scope="strict",
                                      skip_on_duplicate=False)
    strict(event("d1"))
    with pytest.raises(DuplicateEventError) as info:
        strict(event("d1"))
    assert info.value.cached_result == {"n": 3}
    assert len(runs) == 3
    # The event may come as a dict or JSON text; extra arguments pass through.
    extra = idempotent_event_handler(lambda e, x, y=0: runs.append(1) or x + y, checker=checker, scope="extra")
    assert extra({"event_id": "d2"}, 1, y=2) == 3 and extra('{"event_id":"d2"}', 5) == 3
    assert process_with_idempotency(event("d3"), lambda e: [e.event_id], checker=checker) == ["d3"]
    assert process_with_idempotency(event("d3"), lambda e: 1 / 0, checker=checker) == ["d3"]


def test_ttl_seconds(store_url, prefix):
    checker = IdempotencyChecker(store_url, key_prefix=prefix)
    runs = []
    short = idempotent_event_handler(lambda e: runs.append(1) or len(runs), checker=checker, ttl_seconds=0.3)
    assert short(event("ttl")) == 1 and short(event("ttl")) == 1
    time.sleep(0.6)  # the record expired: the next delivery is new
    assert short(event("ttl")) == 2


def test_guard_checkpoints_token_and_failure(store_url, prefix):
    checker = IdempotencyChecker(store_url, key_prefix=prefix, lease_seconds=0.3)
    processor = IdempotentEventProcessor(checker, scope="email", heartbeat=False)
    e = event("mail-1")
    with processor.process(e) as ctx:
        assert ctx.should_process and not ctx.is_duplicate and ctx.token > 0 and ctx.last_checkpoint is None
        first_token = ctx.token
        ctx.checkpoint("rendered", "body-v1")
        # leaving without mark_completed(): FAILED, retryable
    record = checker.get(checker.with_options(scope="email").key_for(e))
    assert record.status == ProcessingStatus.FAILED and record.retryable

    with processor.process(e) as ctx:
        assert ctx.should_process and ctx.attempt == 2 and ctx.token > first_token
        assert ctx.last_checkpoint.name == "rendered" and ctx.last_checkpoint.data == "body-v1"
        ctx.mark_completed({"sent": True})
    with processor.process(e) as ctx:
        assert ctx.is_duplicate and ctx.status == ClaimStatus.COMPLETED and ctx.cached_result == {"sent": True}

    with pytest.raises(RuntimeError):
        with processor.process(event("mail-2")) as ctx:
            raise RuntimeError("smtp down")
    record = checker.get(checker.with_options(scope="email").key_for(event("mail-2")))
    assert record.status == ProcessingStatus.FAILED and record.error == "RuntimeError: smtp down" and record.retryable
    with pytest.raises(TerminalError):
        with processor.process(event("mail-3")) as ctx:
            raise TerminalError("no such mailbox")
    with processor.process(event("mail-3")) as ctx:
        assert ctx.status == ClaimStatus.FAILED and ctx.cached_error == "no such mailbox"


def test_heartbeat_keeps_a_long_guard_alive(store_url, prefix):
    checker = IdempotencyChecker(store_url, key_prefix=prefix, lease_seconds=0.3)
    processor = IdempotentEventProcessor(checker)
    other = IdempotentEventProcessor(checker)
    with processor.process(event("long")) as ctx:
        time.sleep(0.8)  # well past the lease: the heartbeat renews it
        with other.process(event("long")) as dup:
            assert dup.in_progress
        ctx.mark_completed("done")


WORKER = textwrap.dedent("""
    import sys, time, idem
    url, prefix = sys.argv[1], sys.argv[2]
    checker = idem.IdempotencyChecker(url, key_prefix=prefix, lease_seconds=1)
    processor = idem.IdempotentEventProcessor(checker, scope="ledger")
    e = idem.EventEnvelope(event_id="killed-1", event_type="test", payload={"amount": 7})
    with processor.process(e) as ctx:
        assert ctx.should_process
        ctx.checkpoint("debited", "txn-42")
        print(ctx.token, flush=True)
        time.sleep(60)  # killed here, mid-handler
""")


def test_takeover_after_a_killed_python_worker(store_url, prefix):
    child = subprocess.Popen([sys.executable, "-c", WORKER, store_url, prefix], stdout=subprocess.PIPE, text=True)
    try:
        line = child.stdout.readline()
        assert line.strip(), "the worker did not claim"
        dead_token = int(line)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    checker = IdempotencyChecker(store_url, key_prefix=prefix)
    processor = IdempotentEventProcessor(checker, scope="ledger")
    e = EventEnvelope(event_id="killed-1", event_type="test", payload={"amount": 7})
    with processor.process(e) as ctx:
        assert ctx.in_progress  # the dead worker's lease is still live: never ack this
    time.sleep(1.2)  # the lease (1 s) runs out; no heartbeat renews it
    with processor.process(e) as ctx:
        assert ctx.should_process and ctx.is_takeover and ctx.attempt == 2 and ctx.token > dead_token
        assert ctx.last_checkpoint.name == "debited" and ctx.last_checkpoint.data == "txn-42"
        ctx.mark_completed({"resumed_from": ctx.last_checkpoint.data})
    with processor.process(e) as ctx:
        assert ctx.cached_result == {"resumed_from": "txn-42"}
