"""The FastAPI webhook example under a real uvicorn, driven by a real HTTP
client (httpx), on SQLite and a real Redis."""

import concurrent.futures
import os
import subprocess
import sys

import httpx
import pytest

import idem

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "bindings", "python", "tests"))

from servers import RedisServer, ServerProcess, free_port  # noqa: E402


def start_app(store_url, work_dir):
    """uvicorn serving app.py on a free port, with IDEM_STORE_URL=store_url."""
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "app:app", "--app-dir", HERE, "--host", "127.0.0.1", "--port",
            str(port), "--log-level", "warning"]
    package_root = os.path.dirname(os.path.dirname(idem.__file__))  # the idem this test imports
    env = {"IDEM_STORE_URL": store_url,
           "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    return ServerProcess(argv, port, str(work_dir), "uvicorn", env=env)


@pytest.fixture(scope="module")
def redis_server():
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "redis"])
def base_url(request, tmp_path):
    store = f"sqlite://{tmp_path}/idem.db" if request.param == "sqlite" else request.getfixturevalue(
        "redis_server").url
    server = start_app(store, tmp_path)
    yield f"http://127.0.0.1:{server.port}"
    server.stop()


def pay(client, key, **payment):
    headers = {"Idempotency-Key": key} if key else {}
    return client.post("/webhooks/payments", json=payment, headers=headers)


def test_webhook_idempotency_key_semantics(base_url):
    with httpx.Client(base_url=base_url, timeout=10) as client:
        assert pay(client, None, customer="c1", amount=50).status_code == 400

        first = pay(client, "pay_1", customer="c1", amount=50, currency="EUR")
        assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
        for _ in range(3):
            again = pay(client, "pay_1", customer="c1", amount=50, currency="EUR")
            assert again.status_code == 201 and again.json() == first.json()
            assert again.headers["Idempotent-Replayed"] == "true"

        reused = pay(client, "pay_1", customer="c1", amount=5000, currency="EUR")
        assert reused.status_code == 422 and reused.headers["content-type"] == "application/problem+json"

        # A 5xx is not stored: the retry charges.
        down = pay(client, "pay_2", customer="c2", amount=7, gateway_down_once=True)
        assert down.status_code == 502
        retried = pay(client, "pay_2", customer="c2", amount=7, gateway_down_once=True)
        assert retried.status_code == 201 and "Idempotent-Replayed" not in retried.headers

        charges = client.get("/ledger").json()["charges"]
        assert [c["customer"] for c in charges] == ["c1", "c2"]


def test_concurrent_deliveries_charge_once(base_url):
    with httpx.Client(base_url=base_url, timeout=10) as client:
        def deliver(_):
            return pay(client, "pay_slow", customer="c3", amount=9, processing_seconds=0.5)

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(deliver, range(8)))
        codes = sorted(a.status_code for a in answers)
        assert codes.count(201) == 1 and codes.count(409) == 7, codes
        assert all(a.headers["Retry-After"] == "1" for a in answers if a.status_code == 409)

        # The sender retries the 409s later: all replayed, still one charge.
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            later = list(pool.map(deliver, range(8)))
        assert {a.status_code for a in later} == {201}
        assert all(a.headers.get("Idempotent-Replayed") == "true" for a in later)
        assert len({a.json()["charge_id"] for a in answers + later if a.status_code == 201}) == 1
        assert [c["customer"] for c in client.get("/ledger").json()["charges"]] == ["c3"]


def test_store_down_is_503(tmp_path):
    server = start_app(f"redis://127.0.0.1:{free_port()}", tmp_path)  # nothing listens there
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=10) as client:
            r = pay(client, "pay_x", customer="c9", amount=1)
            assert r.status_code == 503 and r.headers["Retry-After"] == "5"
            assert client.get("/ledger").json()["charges"] == []
    finally:
        server.stop()
