"""EventEnvelope (the C++ idem::Envelope) and the conversions the patterns
accept as an event."""

from ._idem import EventEnvelope


def as_envelope(event) -> EventEnvelope:
    """An EventEnvelope from what callers pass: an EventEnvelope, a dict in
    the envelope's JSON shape, or its JSON text (str or bytes)."""
    if isinstance(event, EventEnvelope):
        return event
    if isinstance(event, dict):
        return EventEnvelope.from_dict(event)
    if isinstance(event, (str, bytes, bytearray)):
        return EventEnvelope.from_json(bytes(event) if isinstance(event, bytearray) else event)
    raise TypeError(f"expected an EventEnvelope, a dict or JSON text, got {type(event).__name__}")
