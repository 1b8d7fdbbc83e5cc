"""Python threads: races on the same keys (each key's handler runs once),
and proof that the binding releases the GIL while it waits for the store
and while a handler runs elsewhere."""

import random
import sqlite3
import threading
import time

import pytest

import idem
from idem import EventEnvelope, IdempotencyChecker, idempotent_event_handler


def test_threads_race_on_the_same_keys(checker):
    keys = [f"race-{i}" for i in range(40)]
    runs: dict[str, int] = {}
    lock = threading.Lock()

    @idempotent_event_handler(checker=checker)
    def handle(e):
        with lock:
            runs[e.event_id] = runs.get(e.event_id, 0) + 1
        time.sleep(0.002)  # widen the window in which duplicates arrive
        return {"key": e.event_id, "by": threading.get_ident()}

    answers: dict[str, set] = {k: set() for k in keys}
    errors = []

    def worker(seed):
        order = keys[:]
        random.Random(seed).shuffle(order)
        for k in order:
            try:
                r = handle(EventEnvelope(event_id=k, payload={"k": k}))
                with lock:
                    answers[k].add(r["by"])
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert runs == {k: 1 for k in keys}
    # Every delivery of a key saw the one execution's result.
    assert all(len(v) == 1 for v in answers.values())


class Counter(threading.Thread):
    """Counts as fast as pure Python can: it only advances while this thread
    holds the GIL, so it stalls whenever another thread keeps the GIL."""

    def __init__(self):
        super().__init__(daemon=True)
        self.n = 0
        self.stop = False

    def run(self):
        while not self.stop:
            self.n += 1

    def rate(self, seconds=0.2):
        start = self.n
        time.sleep(seconds)
        return (self.n - start) / seconds


def counted_during(counter, call):
    before = counter.n
    started = time.monotonic()
    call()
    return counter.n - before, time.monotonic() - started


def assert_gil_free_while_blocked(block_for, call, start_blocking=lambda: None):
    counter = Counter()
    counter.start()
    try:
        rate = counter.rate()
        start_blocking()
        count, elapsed = counted_during(counter, call)
    finally:
        counter.stop = True
        counter.join()
    assert elapsed >= block_for * 0.8, "the store call was not blocked: the test proves nothing"
    # Holding the GIL for the whole wait would leave the counter a switch
    # interval or two (a few ms); released, it runs for most of the wait.
    assert count >= rate * block_for * 0.3, (count, rate, elapsed)


def test_gil_released_while_sqlite_is_locked(tmp_path, prefix):
    path = tmp_path / "locked.db"
    checker = IdempotencyChecker(f"sqlite://{path}?busy_timeout_ms=5000", key_prefix=prefix)
    checker.is_duplicate("warm-up")  # creates the schema
    blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)

    def lock_for_half_a_second():
        blocker.execute("BEGIN EXCLUSIVE")
        threading.Timer(0.5, lambda: blocker.execute("COMMIT")).start()

    assert_gil_free_while_blocked(0.5, lambda: checker.mark_processing(EventEnvelope(event_id="locked")),
                                  lock_for_half_a_second)
    blocker.close()


def test_gil_released_while_redis_is_paused(redis_server, prefix):
    checker = IdempotencyChecker(redis_server.url, key_prefix=prefix)
    handled = idempotent_event_handler(lambda e: "ok", checker=checker)
    handled(EventEnvelope(event_id="warm-up"))  # connects

    def pause():
        assert b"OK" in redis_server.command("CLIENT", "PAUSE", "500")

    assert_gil_free_while_blocked(0.5, lambda: handled(EventEnvelope(event_id="paused")), pause)


def test_gil_released_while_waiting_for_an_in_progress_original(store_url, prefix):
    checker = IdempotencyChecker(store_url, key_prefix=prefix)
    started = threading.Event()

    @idempotent_event_handler(checker=checker, wait_for_in_progress=10)
    def slow(e):
        started.set()
        time.sleep(0.8)
        return "original"

    e = EventEnvelope(event_id="waited")
    original = threading.Thread(target=slow, args=(e,))
    original.start()
    started.wait(5)
    # The duplicate waits in C++ for the original; the original needs the
    # GIL to finish, so a wait that kept the GIL would deadlock until the
    # 10 s wait ran out.
    holder = {}
    assert_gil_free_while_blocked(0.3, lambda: holder.setdefault("r", slow(e)))
    original.join()
    assert holder["r"] == "original"


def test_handlers_of_different_keys_run_in_parallel(store_url, prefix):
    checker = IdempotencyChecker(store_url, key_prefix=prefix)

    @idempotent_event_handler(checker=checker)
    def io_bound(e):
        time.sleep(0.2)  # I/O in the handler: releases the GIL
        return e.event_id

    threads = [threading.Thread(target=io_bound, args=(EventEnvelope(event_id=f"par-{i}"),)) for i in range(8)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    # Serialized (a lock or the GIL held across the handler) would be 1.6 s.
    assert elapsed < 1.0, elapsed
