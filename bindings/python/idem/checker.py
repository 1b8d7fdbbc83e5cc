"""IdempotencyChecker: the manual pattern, with the original module's method
names, over the C++ checker. Every store call releases the GIL."""

import threading

from . import _idem
from ._json import dumps
from .envelope import as_envelope
from .errors import ConfigurationError

Claim = _idem.Claim
ClaimStatus = _idem.ClaimStatus
AcquireKind = _idem.AcquireKind
IdempotencyRecord = _idem.IdempotencyRecord


class IdempotencyChecker:
    """Claims, completes and fails keys in the store at ``store_url``.

    ``store_url``: ``sqlite:///path/idem.db``, ``redis://host:port``, ... (see
    the README); None means ``IDEM_STORE_URL``, else the default SQLite file.
    ``ttl_seconds`` is how long a finished record is kept and replayed,
    ``lease_seconds`` how long a claim is exclusive before a takeover.

        checker = IdempotencyChecker("redis://127.0.0.1:6379")
        claim = checker.mark_processing(event)
        if claim:                                   # acquired
            checker.mark_completed(claim, {"charged": True})
        elif claim.status == ClaimStatus.COMPLETED:
            reply(claim.cached_result)
    """

    def __init__(self, store_url: str | None = None, *, ttl_seconds: float | None = None,
                 lease_seconds: float | None = None, key_prefix: str | None = None, scope: str | None = None,
                 validate_payload: bool | None = None, hash_keys: bool | None = None,
                 max_result_bytes: int | None = None, _native=None):
        if _native is None:
            import os

            _native = _idem.Checker.open(store_url or os.environ.get("IDEM_STORE_URL") or None,
                                         ttl_seconds, lease_seconds, key_prefix, scope, validate_payload,
                                         hash_keys, max_result_bytes)
        self._native = _native
        # Claims this checker acquired and has not finished, so that the
        # original style mark_completed(idempotency_key, result) finds its
        # fencing token: {store key: token}.
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_url(cls, store_url: str, **options) -> "IdempotencyChecker":
        return cls(store_url, **options)

    def with_options(self, *, ttl_seconds=None, lease_seconds=None, key_prefix=None, scope=None):
        """A checker on the same store connection with other options."""
        return IdempotencyChecker(_native=self._native.with_options(ttl_seconds, lease_seconds, key_prefix, scope))

    # --- properties ---------------------------------------------------------
    store_kind = property(lambda self: self._native.store_kind)
    async_is_native = property(lambda self: self._native.async_is_native)
    ttl_seconds = property(lambda self: self._native.ttl_seconds)
    lease_seconds = property(lambda self: self._native.lease_seconds)
    key_prefix = property(lambda self: self._native.key_prefix)

    # --- the original module's names ---------------------------------------
    def get_processing_record(self, idempotency_key: str) -> IdempotencyRecord | None:
        """The record of a raw idempotency key (the event id when the event
        has no idempotency_key), or None."""
        return self._native.get_processing_record(idempotency_key)

    def mark_processing(self, event) -> Claim:
        """Claims the event's key: one atomic store operation. The Claim is
        truthy when this worker acquired the key; otherwise ``status`` says
        why (COMPLETED with ``cached_result``, IN_PROGRESS, FAILED, MISMATCH)."""
        claim = self._native.claim(as_envelope(event))
        if claim.acquired:
            with self._lock:
                self._held[claim.key] = claim.token
        return claim

    def mark_completed(self, claim_or_key, result=None, *, token: int | None = None) -> None:
        """Stores ``result`` (any JSON value) and makes the record COMPLETED.
        Pass the Claim, or the idempotency key of a claim this checker made.
        LeaseLostError when another worker took the key over."""
        key, token = self._resolve(claim_or_key, token)
        self._native.complete(key, token, dumps(result))
        self._release(key, token)

    def mark_failed(self, claim_or_key, error, *, retryable: bool = True, token: int | None = None) -> None:
        """Marks the record FAILED. A retryable failure lets the next delivery
        run again; a terminal one is replayed to duplicates."""
        key, token = self._resolve(claim_or_key, token)
        self._native.fail(key, token, str(error), retryable)
        self._release(key, token)

    def is_duplicate(self, idempotency_key: str) -> bool:
        """True when a new delivery must not run: COMPLETED, terminally FAILED,
        or PROCESSING under a live lease."""
        return self._native.is_duplicate(idempotency_key)

    def delete_record(self, idempotency_key: str) -> bool:
        return self._native.delete_record(idempotency_key)

    # --- beyond the original ----------------------------------------------
    def key_for(self, event_or_key) -> str:
        """The full store key of an event or of a raw idempotency key."""
        if isinstance(event_or_key, str):
            return self._native.key_for(event_or_key)
        return self._native.key_for(as_envelope(event_or_key))

    def checkpoint(self, claim: Claim, name: str, data: str = "") -> None:
        self._native.checkpoint(claim.key, claim.token, name, data)

    def extend(self, claim: Claim) -> None:
        self._native.extend(claim.key, claim.token)

    def get(self, key: str) -> IdempotencyRecord | None:
        """The record at a full store key (Claim.key)."""
        return self._native.get(key)

    def wait_for_completion(self, key: str, timeout_seconds: float) -> IdempotencyRecord | None:
        return self._native.wait_for_completion(key, timeout_seconds)

    def ping(self) -> bool:
        return self._native.ping()

    def _resolve(self, claim_or_key, token):
        if isinstance(claim_or_key, Claim):
            return claim_or_key.key, claim_or_key.token if token is None else token
        key = self._native.key_for(claim_or_key)
        if token is None:
            with self._lock:
                token = self._held.get(key)
            if token is None:
                raise ConfigurationError(f"no claim of {claim_or_key!r} is held by this checker: pass the Claim "
                                         "that mark_processing() returned, or its token")
        return key, token

    def _release(self, key, token):
        with self._lock:
            if self._held.get(key) == token:
                del self._held[key]


_default = None
_default_lock = threading.Lock()


def get_idempotency_checker() -> IdempotencyChecker:
    """The process-wide default checker, opened once from ``IDEM_STORE_URL``
    (else the default SQLite file). Shared with C++ code in the same process
    that calls idem::get_idempotency_checker()."""
    global _default
    with _default_lock:
        if _default is None:
            _default = IdempotencyChecker(_native=_idem.Checker.default())
        return _default


def set_idempotency_checker(checker: IdempotencyChecker | None) -> None:
    """Replaces the process-wide default (None: reopen from the environment
    on next use)."""
    global _default
    with _default_lock:
        _default = checker
        _idem.Checker.set_default(checker._native if checker is not None else None)
