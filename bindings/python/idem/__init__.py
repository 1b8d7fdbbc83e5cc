"""idem: run each event handler once per idempotency key.

The names of the original Python module, backed by Idem's C++ core: one
atomic claim with a lease, fencing tokens, payload fingerprints, and a store
shared with C++ services (results are stored as JSON, so each side replays
the other's).

    from idem import idempotent_event_handler, EventEnvelope

    @idempotent_event_handler(ttl_seconds=24 * 3600)
    def handle(event):
        return {"charged": charge(event.payload)}

    handle(EventEnvelope(event_id="evt-1", event_type="payment", payload={"amount": 5}))
"""

import atexit as _atexit

from . import _idem
from .checker import (AcquireKind, Claim, ClaimStatus, IdempotencyChecker, IdempotencyRecord,
                      get_idempotency_checker, set_idempotency_checker)
from .decorator import idempotent_event_handler, process_with_idempotency
from .envelope import EventEnvelope
from .errors import (ConfigurationError, DuplicateEventError, EventInProgressError, IdemError,
                     InvalidEnvelopeError, KeyMismatchError, LeaseLostError, ResultTooLargeError,
                     StoreUnavailableError, TerminalError)
from .processor import AsyncProcessingContext, IdempotentEventProcessor, ProcessingContext
from .status import ProcessingStatus

Checkpoint = _idem.Checkpoint
default_store_url = _idem.default_store_url

# From here on, store threads leave Python alone (see python_ref.h).
_atexit.register(_idem._shutdown)

__all__ = [
    "AcquireKind", "AsyncProcessingContext", "Checkpoint", "Claim", "ClaimStatus", "ConfigurationError",
    "DuplicateEventError", "EventEnvelope", "EventInProgressError", "IdemError", "IdempotencyChecker",
    "IdempotencyRecord", "IdempotentEventProcessor", "InvalidEnvelopeError", "KeyMismatchError",
    "LeaseLostError", "ProcessingContext", "ProcessingStatus", "ResultTooLargeError", "StoreUnavailableError",
    "TerminalError", "default_store_url", "get_idempotency_checker", "idempotent_event_handler",
    "process_with_idempotency", "set_idempotency_checker",
]
