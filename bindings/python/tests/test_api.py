"""The original module's names, on SQLite and a real Redis: the envelope,
the manual API (IdempotencyChecker), records and statuses, the default
checker from IDEM_STORE_URL."""

import json
import os
import subprocess
import sys

import pytest

import idem
from idem import (ClaimStatus, EventEnvelope, IdempotencyChecker, InvalidEnvelopeError, ProcessingStatus)


def test_envelope_json_round_trip_and_key_fallback():
    e = EventEnvelope(event_id="evt-1", event_type="payment.created", payload={"b": 2, "a": 1},
                      metadata={"trace": "t1"}, source="checkout", occurred_at="2026-11-28T07:49:58Z")
    assert e.effective_key == "evt-1"  # no idempotency_key: the event id, as in the original
    assert e.payload == {"a": 1, "b": 2}
    back = EventEnvelope.from_json(e.to_json())
    assert back == e
    assert back.metadata == {"trace": "t1"} and back.source == "checkout"
    assert back.timestamp.year == 2026
    keyed = EventEnvelope.from_dict({"event_id": "evt-2", "idempotency_key": "order-9", "unknown": 1})
    assert keyed.effective_key == "order-9" and keyed.idempotency_key == "order-9"
    assert EventEnvelope(event_id="x", payload={"a": 1, "b": 2}).payload_fingerprint() == \
        EventEnvelope(event_id="y", payload='{ "b": 2, "a": 1 }').payload_fingerprint()


@pytest.mark.parametrize("bad, field", [
    ('{"event_type":"x"}', "event_id"),
    ('{"event_id":""}', "event_id"),
    ('{"event_id":"e","payload":[1]}', "payload"),
    ('{"event_id":"e","occurred_at":"yesterday"}', "occurred_at"),
    ("not json", ""),
])
def test_envelope_errors_name_the_field(bad, field):
    with pytest.raises(InvalidEnvelopeError) as info:
        EventEnvelope.from_json(bad)
    assert field in str(info.value)
    assert info.value.code == "invalid_argument"


def test_manual_api(checker):
    e = EventEnvelope(event_id="evt-manual", event_type="t", payload={"amount": 5})
    assert checker.get_processing_record("evt-manual") is None
    assert not checker.is_duplicate("evt-manual")

    claim = checker.mark_processing(e)
    assert claim and claim.status == ClaimStatus.ACQUIRED and claim.token > 0
    record = checker.get_processing_record("evt-manual")
    assert record.status == ProcessingStatus.PROCESSING and record.attempt == 1
    assert checker.is_duplicate("evt-manual")  # a live lease

    second = checker.mark_processing(e)
    assert not second and second.status == ClaimStatus.IN_PROGRESS

    checker.mark_completed("evt-manual", {"charged": True, "ids": [1, 2]})  # the original's call shape
    record = checker.get_processing_record("evt-manual")
    assert record.status == ProcessingStatus.COMPLETED and record.status == "COMPLETED"
    assert record.result == {"charged": True, "ids": [1, 2]}
    assert json.loads(record.result_json) == record.result
    assert record.completed_at is not None and record.event_type == "t"
    dup = checker.mark_processing(e)
    assert dup.status == ClaimStatus.COMPLETED and dup.cached_result == {"charged": True, "ids": [1, 2]}

    assert checker.delete_record("evt-manual")
    assert not checker.delete_record("evt-manual")
    again = checker.mark_processing(e)
    assert again and again.token > claim.token  # tokens never repeat for a key
    checker.mark_failed(again, "gateway timeout")
    record = checker.get_processing_record("evt-manual")
    assert record.status == ProcessingStatus.FAILED and record.error == "gateway timeout" and record.retryable
    retry = checker.mark_processing(e)
    assert retry and retry.acquire_kind == idem.AcquireKind.RETRY and retry.attempt == 2  # attempts count within one life of the key


def test_mark_completed_needs_a_held_claim(checker):
    with pytest.raises(idem.ConfigurationError):
        checker.mark_completed("never-claimed", 1)


def test_results_are_json(checker):
    values = [None, 0, 1.5, "text", [1, "two", None], {"nested": {"ü": "ß"}}, True]
    for i, value in enumerate(values):
        e = EventEnvelope(event_id=f"v{i}")
        claim = checker.mark_processing(e)
        checker.mark_completed(claim, value)
        assert checker.get_processing_record(f"v{i}").result == value
    claim = checker.mark_processing(EventEnvelope(event_id="nan"))
    with pytest.raises(ValueError):
        checker.mark_completed(claim, float("nan"))  # not JSON: a C++ reader could not read it
    with pytest.raises(TypeError):
        checker.mark_completed(claim, object())


def test_bad_store_url_is_a_configuration_error():
    with pytest.raises(idem.ConfigurationError):
        IdempotencyChecker("nosuch://x")
    with pytest.raises(idem.ConfigurationError):
        IdempotencyChecker("sqlite:///tmp/x.db", ttl_seconds=-1)


def test_store_down_is_store_unavailable(prefix):
    from servers import free_port
    checker = IdempotencyChecker(f"redis://127.0.0.1:{free_port()}", key_prefix=prefix)
    with pytest.raises(idem.StoreUnavailableError) as info:
        checker.mark_processing(EventEnvelope(event_id="e"))
    assert info.value.code in ("unavailable", "timeout")


def test_get_idempotency_checker_reads_idem_store_url(tmp_path):
    url = f"sqlite://{tmp_path}/env.db"
    code = (
        "import idem\n"
        "c = idem.get_idempotency_checker()\n"
        "assert c is idem.get_idempotency_checker()\n"
        "print(c.store_kind)\n"
        "c.mark_completed(c.mark_processing(idem.EventEnvelope(event_id='from-env')), 7)\n"
    )
    env = dict(os.environ, IDEM_STORE_URL=url)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "sqlite"
    assert IdempotencyChecker(url).get_processing_record("from-env").result == 7
