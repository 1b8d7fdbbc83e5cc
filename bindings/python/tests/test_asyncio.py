"""asyncio: the decorator on an async def with 1,000 concurrent tasks, and
async with, on SQLite and a real Redis. The event loop never waits for the
store: answers come back through loop.call_soon_threadsafe."""

import asyncio
import time

import pytest

import idem
from idem import (ClaimStatus, EventEnvelope, EventInProgressError, IdempotencyChecker, IdempotentEventProcessor,
                  KeyMismatchError, LeaseLostError, ProcessingStatus, TerminalError, idempotent_event_handler)


@pytest.mark.parametrize("path", ["default", "inline"])
def test_decorator_on_async_def_with_1000_concurrent_tasks(checker, path):
    runs: dict[str, int] = {}

    @idempotent_event_handler(checker=checker)
    async def handle(e):
        runs[e.event_id] = runs.get(e.event_id, 0) + 1
        await asyncio.sleep(0.01)  # a handler that awaits I/O
        return {"key": e.event_id}

    if path == "inline":
        # Call the asynchronous store API from the loop thread even where it
        # completes inline (the path of a native store, whose callbacks come
        # from its I/O thread): the bridge must work both ways.
        handle.idempotency_processor()._native.offload = False
    keys = [f"async-{i}" for i in range(500)]

    async def deliver(k):
        # Redelivered until it is no longer in progress, as a broker would.
        while True:
            try:
                return await handle(EventEnvelope(event_id=k, payload={"k": k}))
            except EventInProgressError:
                await asyncio.sleep(0.005)

    async def main():
        started = time.monotonic()
        results = await asyncio.gather(*(deliver(k) for k in keys + keys))  # 1,000 tasks, each key twice
        return results, time.monotonic() - started

    results, elapsed = asyncio.run(main())
    assert runs == {k: 1 for k in keys}
    assert results == [{"key": k} for k in keys + keys]
    # 500 handlers of 10 ms each, run one after the other, would take 5 s.
    assert elapsed < 4.0, elapsed


def test_the_loop_keeps_running_while_redis_is_paused(redis_server, prefix):
    checker = IdempotencyChecker(redis_server.url, key_prefix=prefix)

    @idempotent_event_handler(checker=checker)
    async def handle(e):
        return e.event_id

    async def main():
        await handle(EventEnvelope(event_id="warm-up"))  # connects
        ticks = 0
        stop = False

        async def ticker():
            nonlocal ticks
            while not stop:
                ticks += 1
                await asyncio.sleep(0.01)

        tick_task = asyncio.create_task(ticker())
        assert b"OK" in redis_server.command("CLIENT", "PAUSE", "400")
        started = time.monotonic()
        results = await asyncio.gather(*(handle(EventEnvelope(event_id=f"p{i}")) for i in range(100)))
        elapsed = time.monotonic() - started
        stop = True
        await tick_task
        return results, ticks, elapsed

    results, ticks, elapsed = asyncio.run(main())
    assert results == [f"p{i}" for i in range(100)]
    assert elapsed >= 0.3, "the store was not paused: the test proves nothing"
    # A loop blocked in a store call would not tick until Redis answered.
    assert ticks >= 10, ticks


def test_async_failures_terminal_and_mismatch(checker):
    calls = []

    @idempotent_event_handler(checker=checker, scope="a")
    async def flaky(e):
        calls.append(e.event_id)
        if e.event_id == "terminal":
            raise TerminalError("refused")
        if len(calls) == 1:
            raise ConnectionError("try again")
        return "ok"

    async def main():
        with pytest.raises(ConnectionError):
            await flaky(EventEnvelope(event_id="retry"))
        assert await flaky(EventEnvelope(event_id="retry")) == "ok"
        assert await flaky(EventEnvelope(event_id="retry")) == "ok"
        for _ in range(2):
            with pytest.raises(TerminalError, match="refused"):
                await flaky(EventEnvelope(event_id="terminal"))
        with pytest.raises(KeyMismatchError):
            await flaky(EventEnvelope(event_id="retry", payload={"other": 1}))

    asyncio.run(main())
    assert calls == ["retry", "retry", "terminal"]
    record = checker.with_options(scope="a").get_processing_record("terminal")
    assert record.status == ProcessingStatus.FAILED and not record.retryable


def test_async_with_guard(store_url, prefix):
    checker = IdempotencyChecker(store_url, key_prefix=prefix, lease_seconds=0.3)
    processor = IdempotentEventProcessor(checker, scope="guard")

    async def main():
        e = EventEnvelope(event_id="g1")
        async with processor.process(e) as ctx:
            assert ctx.should_process and ctx.token > 0 and ctx.attempt == 1
            await ctx.checkpoint("half", "state-1")
            async with processor.process(e) as dup:
                assert dup.in_progress and not dup.should_process
            await asyncio.sleep(0.6)  # past the lease: the heartbeat keeps it
            ctx.mark_completed({"done": True})
        async with processor.process(e) as ctx:
            assert ctx.status == ClaimStatus.COMPLETED and ctx.cached_result == {"done": True}

        with pytest.raises(RuntimeError):
            async with processor.process(EventEnvelope(event_id="g2")) as ctx:
                await ctx.checkpoint("step", "1")
                raise RuntimeError("crashed")
        async with processor.process(EventEnvelope(event_id="g2")) as ctx:  # retry after the failure
            assert ctx.should_process and ctx.attempt == 2 and ctx.last_checkpoint.data == "1"
            token = ctx.token
            ctx.mark_completed("second")

        # A stale owner: its completion is refused, and async with says so.
        stale_checker = IdempotencyChecker(store_url, key_prefix=prefix, lease_seconds=0.2)
        stale = IdempotentEventProcessor(stale_checker, scope="guard", heartbeat=False)
        with pytest.raises(LeaseLostError):
            async with stale.process(EventEnvelope(event_id="g3")) as ctx:
                await asyncio.sleep(0.3)
                taker = IdempotencyChecker(store_url, key_prefix=prefix).with_options(scope="guard")
                assert taker.mark_processing(EventEnvelope(event_id="g3"))
                ctx.mark_completed("too late")
        return token

    assert asyncio.run(main()) > 0
