"""The exceptions of idem. Every store and guard error is an IdemError; the
C++ error code is in ``.code`` (e.g. ``"unavailable"``)."""


class IdemError(Exception):
    """Base of every error idem raises."""

    def __init__(self, message: str = "", code: str | None = None):
        super().__init__(message)
        self.code = code


class StoreUnavailableError(IdemError):
    """The store is down or too slow; the handler did not run. Let the message
    be redelivered."""


class LeaseLostError(IdemError):
    """Another worker took the key over (or the token is stale); nothing was
    written."""


class KeyMismatchError(IdemError):
    """The idempotency key was already used with a different payload."""


class InvalidEnvelopeError(IdemError, ValueError):
    """The envelope or key is malformed; the message names the field.
    Retrying cannot help: dead-letter the message."""


class ConfigurationError(IdemError, ValueError):
    """An option is out of range, the store URL is bad, or a call is not
    allowed in the current state."""


class ResultTooLargeError(IdemError):
    """The handler's result exceeds the checker's max_result_bytes."""


class TerminalError(Exception):
    """Raise it (or a subclass) from a handler to say "retrying will not
    help": the message is stored and every duplicate raises TerminalError
    with it, instead of running the handler again."""


class DuplicateEventError(IdemError):
    """A duplicate of an event that already completed (raised when
    skip_on_duplicate is False). The message was handled: ack it.
    ``cached_result`` is the original's result (decoded JSON)."""

    def __init__(self, cached_result=None, key: str | None = None, message: str | None = None):
        super().__init__(message or f"duplicate event: {key!r} already completed", "duplicate")
        self.cached_result = cached_result
        self.key = key


class EventInProgressError(IdemError):
    """A duplicate whose original is still running. Never ack it: redeliver
    later (nak with a delay, HTTP 409), because the original may still die."""

    def __init__(self, message: str = "", key: str | None = None, record=None, waited_seconds: float = 0.0):
        super().__init__(message or f"event {key!r} is in progress elsewhere", "in_progress")
        self.key = key
        self.record = record
        self.waited_seconds = waited_seconds
