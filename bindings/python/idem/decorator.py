"""@idempotent_event_handler and process_with_idempotency: the wrapper
pattern, for plain functions and coroutines."""

import asyncio
import functools
import threading

from .checker import ClaimStatus
from .envelope import as_envelope
from .errors import DuplicateEventError, EventInProgressError, TerminalError
from .processor import IdempotentEventProcessor


class _LazyProcessor:
    """The processor of one decorated function, made on first call so that a
    handler declared at import time does not open the default store before
    the program configured it."""

    def __init__(self, make):
        self._make = make
        self._processor = None
        self._lock = threading.Lock()

    def get(self) -> IdempotentEventProcessor:
        processor = self._processor
        if processor is None:
            with self._lock:
                if self._processor is None:
                    self._processor = self._make()
                processor = self._processor
        return processor


def idempotent_event_handler(func=None, *, ttl_seconds: float | None = None, skip_on_duplicate: bool = True,
                             return_cached_result: bool = True, checker=None, scope: str | None = None,
                             lease_seconds: float | None = None, wait_for_in_progress: float | None = None):
    """Runs the decorated handler at most once per idempotency key.

    The first argument of each call is the event: an EventEnvelope, a dict in
    the envelope's shape, or its JSON text. The handler's return value (any
    JSON value) is stored; a duplicate gets the stored value (decoded JSON)
    without running the handler, or None with ``return_cached_result=False``,
    or raises DuplicateEventError with ``skip_on_duplicate=False``. A handler
    that raises marks the record FAILED and the exception goes on, so the next
    delivery runs again; TerminalError is stored and raised to every
    duplicate instead.

    Plain functions: a duplicate whose original is still running waits up to
    ``wait_for_in_progress`` seconds (default 5) for it, then replays or raises
    EventInProgressError. ``async def`` handlers never block the event loop on
    the store and never wait: such a duplicate raises EventInProgressError at
    once (nak it, redeliver later).

        @idempotent_event_handler(ttl_seconds=3600, scope="billing")
        def charge(event):
            return {"charge_id": gateway.charge(event.payload["amount"])}
    """

    def decorate(fn):
        lazy = _LazyProcessor(lambda: IdempotentEventProcessor(
            checker, scope=scope, ttl_seconds=ttl_seconds, lease_seconds=lease_seconds,
            wait_for_in_progress=5.0 if wait_for_in_progress is None else wait_for_in_progress))

        if asyncio.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def async_wrapper(event, *args, **kwargs):
                async with lazy.get().process(event) as ctx:
                    if ctx.should_process:
                        result = await fn(event, *args, **kwargs)
                        ctx.mark_completed(result)
                    else:
                        status = ctx.status
                if ctx.should_process:
                    return result
                return _duplicate(ctx, status, skip_on_duplicate, return_cached_result)

            async_wrapper.idempotency_processor = lazy.get
            return async_wrapper

        @functools.wraps(fn)
        def wrapper(event, *args, **kwargs):
            return lazy.get()._native.run(as_envelope(event), fn, (event, *args), kwargs, skip_on_duplicate,
                                          return_cached_result)

        wrapper.idempotency_processor = lazy.get
        return wrapper

    if func is not None:  # used bare: @idempotent_event_handler
        return decorate(func)
    return decorate


def _duplicate(ctx, status, skip_on_duplicate, return_cached_result):
    if status == ClaimStatus.COMPLETED:
        if not skip_on_duplicate:
            raise DuplicateEventError(ctx.cached_result, key=ctx.key)
        return ctx.cached_result if return_cached_result else None
    if status == ClaimStatus.FAILED:
        raise TerminalError(ctx.cached_error or "failed terminally (no message stored)")
    raise EventInProgressError(key=ctx.key, record=ctx.record)


def process_with_idempotency(event, handler, *, checker=None, ttl_seconds: float | None = None,
                             skip_on_duplicate: bool = True, return_cached_result: bool = True,
                             scope: str | None = None, lease_seconds: float | None = None,
                             wait_for_in_progress: float | None = None):
    """Runs ``handler(event)`` once per key, as the decorator does, for a
    one-off call. With an ``async def`` handler it returns a coroutine."""
    wrapped = idempotent_event_handler(handler, ttl_seconds=ttl_seconds, skip_on_duplicate=skip_on_duplicate,
                                       return_cached_result=return_cached_result, checker=checker, scope=scope,
                                       lease_seconds=lease_seconds, wait_for_in_progress=wait_for_in_progress)
    return wrapped(event)
