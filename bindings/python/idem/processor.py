"""IdempotentEventProcessor: the guard pattern as a context manager, for
``with`` (threads) and ``async with`` (asyncio, never blocking the loop)."""

import asyncio
import itertools
import weakref

from . import _idem
from ._json import dumps, loads
from .checker import ClaimStatus, IdempotencyChecker, get_idempotency_checker
from .envelope import as_envelope
from .errors import ConfigurationError, TerminalError


class _Channel:
    """The answers of C++ store threads for one event loop: they queue C++
    values on a LoopChannel and wake the loop through its eventfd, without
    taking the GIL; the loop resolves the waiting futures when it drains."""

    def __init__(self, loop):
        self.native = _idem.LoopChannel()
        self.pending = {}  # id -> callback, touched on the loop's thread only
        self._ids = itertools.count(1)
        loop.add_reader(self.native.fd, self._drain)

    def expect(self, callback) -> int:
        ident = next(self._ids)
        self.pending[ident] = callback
        return ident

    def forget(self, ident) -> None:
        self.pending.pop(ident, None)

    def _drain(self):
        for ident, value in self.native.drain():
            callback = self.pending.pop(ident, None)
            if callback is not None:
                callback(value)


_channels: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Channel]" = weakref.WeakKeyDictionary()


def _channel(loop) -> _Channel:
    channel = _channels.get(loop)
    if channel is None:
        channel = _channels[loop] = _Channel(loop)
    return channel


def _failure_message(exc: BaseException) -> str:
    if isinstance(exc, TerminalError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class IdempotentEventProcessor:
    """Runs your code at most once per key; you decide when it is done.

        processor = IdempotentEventProcessor(checker, scope="email")
        with processor.process(event) as ctx:
            if not ctx.should_process:
                return ctx.cached_result       # ctx.in_progress: nak it, don't ack
            send_receipt(event, ctx.token)     # the fencing token
            ctx.mark_completed({"sent": True})

    Leaving the block without mark_completed() marks the record FAILED
    (retryable; terminal when the block raised TerminalError), so the next
    delivery runs again. A background heartbeat renews the lease while the
    block runs. ``async with processor.process(event) as ctx`` is the same for
    asyncio; there ``await ctx.checkpoint(...)``.

    ``wait_for_in_progress`` (seconds): how long ``with`` waits for an
    original that is still running before reporting ``ctx.in_progress``;
    ``async with`` never waits.
    """

    def __init__(self, checker: IdempotencyChecker | None = None, *, scope: str | None = None,
                 ttl_seconds: float | None = None, lease_seconds: float | None = None,
                 wait_for_in_progress: float | None = None, heartbeat: bool = True,
                 heartbeat_interval: float | None = None):
        checker = checker if checker is not None else get_idempotency_checker()
        if ttl_seconds is not None or lease_seconds is not None:
            checker = checker.with_options(ttl_seconds=ttl_seconds, lease_seconds=lease_seconds)
        self.checker = checker
        # On stores whose asynchronous API answers inline (memory, SQLite),
        # the C++ processor makes the async path's store calls on a worker
        # thread of its own (Processor.offload), never on the event loop.
        self._native = _idem.Processor(checker._native, scope, wait_for_in_progress, heartbeat, heartbeat_interval)

    def process(self, event) -> "_Guard":
        return _Guard(self, as_envelope(event))


class _Guard:
    __slots__ = ("_processor", "_envelope", "_ctx")

    def __init__(self, processor, envelope):
        self._processor = processor
        self._envelope = envelope
        self._ctx = None

    def __enter__(self) -> "ProcessingContext":
        self._ctx = ProcessingContext(self._processor._native.process(self._envelope))
        return self._ctx

    def __exit__(self, exc_type, exc, tb):
        ctx = self._ctx._native
        try:
            if exc is not None and ctx.should_process and not ctx.finished:
                try:
                    ctx.mark_failed(_failure_message(exc), isinstance(exc, TerminalError))
                except Exception:  # the block's exception is the one to see
                    pass
        finally:
            ctx.close()  # an unfinished claim is marked FAILED (retryable) here
        return False

    async def __aenter__(self) -> "AsyncProcessingContext":
        processor = self._processor
        loop = asyncio.get_running_loop()
        channel = _channel(loop)
        acquired = loop.create_future()
        done = loop.create_future()

        def on_acquired(guard):
            if not acquired.done():
                acquired.set_result(guard)

        def on_done(outcome):
            channel.forget(acquired_id)  # never acquired: a duplicate or an error
            if not done.done():
                done.set_result(outcome)
            if not acquired.done():
                acquired.set_result(None)

        acquired_id = channel.expect(on_acquired)
        done_id = channel.expect(on_done)
        processor._native.process_async(self._envelope, channel.native, acquired_id, done_id)
        guard = await acquired
        if guard is None:
            outcome = done.result()
            if outcome.exception is not None:  # the claim failed, or a mismatch
                raise outcome.exception
            self._ctx = AsyncProcessingContext(processor, None, outcome, done)
        else:
            self._ctx = AsyncProcessingContext(processor, guard, None, done)
        return self._ctx

    async def __aexit__(self, exc_type, exc, tb):
        ctx = self._ctx
        if ctx._guard is None:
            return False
        if not ctx._verdict:
            ctx._verdict = True
            if exc is not None:
                ctx._guard.fail(_failure_message(exc), isinstance(exc, TerminalError))
            else:
                ctx._guard.abandon()
        outcome = await ctx._done
        ctx._guard = None
        if exc is None and ctx._succeeded and outcome.exception is not None:
            # The result was not stored: LeaseLostError, ResultTooLargeError,
            # StoreUnavailableError. (After mark_failed() the outcome carries
            # the failure itself, which is no news to the caller.)
            raise outcome.exception
        return False


class ProcessingContext:
    """What ``with processor.process(event)`` gives you."""

    __slots__ = ("_native",)

    def __init__(self, native):
        self._native = native

    should_process = property(lambda self: self._native.should_process,
                              doc="True when this worker owns the key and must run the work.")
    is_duplicate = property(lambda self: not self._native.should_process)
    status = property(lambda self: self._native.status)
    in_progress = property(lambda self: self._native.status == ClaimStatus.IN_PROGRESS,
                           doc="A duplicate whose original still runs: never ack it.")
    is_takeover = property(lambda self: self._native.is_takeover)
    key = property(lambda self: self._native.key)
    token = property(lambda self: self._native.token, doc="The fencing token (0 when not acquired).")
    attempt = property(lambda self: self._native.attempt)
    last_checkpoint = property(lambda self: self._native.last_checkpoint)
    cached_error = property(lambda self: self._native.cached_error)
    record = property(lambda self: self._native.record)
    finished = property(lambda self: self._native.finished)

    @property
    def cached_result(self):
        text = self._native.cached_result_json
        return None if text is None else loads(text)

    def mark_completed(self, result=None) -> None:
        """Stores ``result`` (any JSON value): the record becomes COMPLETED."""
        self._native.mark_completed(dumps(result))

    def mark_failed(self, error, *, terminal: bool = False) -> None:
        self._native.mark_failed(str(error), terminal)

    def checkpoint(self, name: str, data: str = "") -> None:
        """Records a recovery point; a worker that takes over after a crash
        sees it in ``last_checkpoint``."""
        self._native.checkpoint(name, data)

    def extend(self) -> None:
        self._native.extend()


class AsyncProcessingContext:
    """What ``async with processor.process(event)`` gives you."""

    def __init__(self, processor, guard, outcome, done):
        self._processor = processor
        self._guard = guard
        self._outcome = outcome
        self._done = done
        self._verdict = False
        self._succeeded = False

    @property
    def should_process(self) -> bool:
        return self._outcome is None

    is_duplicate = property(lambda self: self._outcome is not None)
    status = property(lambda self: ClaimStatus.ACQUIRED if self._outcome is None else self._outcome.status)
    in_progress = property(lambda self: self.status == ClaimStatus.IN_PROGRESS)
    key = property(lambda self: self._guard.key if self._outcome is None else self._outcome.key)
    token = property(lambda self: self._guard.token if self._outcome is None else 0)
    attempt = property(lambda self: self._guard.attempt if self._outcome is None else 0)
    is_takeover = property(lambda self: self._outcome is None and self._guard.is_takeover)
    last_checkpoint = property(lambda self: self._guard.last_checkpoint if self._outcome is None else None)
    record = property(lambda self: None if self._outcome is None else self._outcome.record)
    cached_error = property(lambda self: None if self._outcome is None else self._outcome.error)

    @property
    def cached_result(self):
        if self._outcome is None or self._outcome.result_json is None:
            return None
        return loads(self._outcome.result_json)

    def _require_owner(self):
        if self._outcome is not None:
            raise ConfigurationError("this worker does not own the key (should_process is False)")
        if self._verdict:
            raise ConfigurationError("the verdict was already given")

    def mark_completed(self, result=None) -> None:
        """Stores ``result`` (any JSON value) without blocking; leaving the
        ``async with`` block waits for the write and raises its error."""
        self._require_owner()
        text = dumps(result)
        self._verdict = self._succeeded = True
        self._guard.succeed(text)

    def mark_failed(self, error, *, terminal: bool = False) -> None:
        self._require_owner()
        self._verdict = True
        self._guard.fail(str(error), terminal)

    async def checkpoint(self, name: str, data: str = "") -> None:
        self._require_owner()
        loop = asyncio.get_running_loop()
        channel = _channel(loop)
        fut = loop.create_future()

        def answered(error):
            if fut.done():
                return
            if error is None:
                fut.set_result(None)
            else:
                fut.set_exception(error)

        self._guard.checkpoint(name, data, channel.native, channel.expect(answered))
        await fut
