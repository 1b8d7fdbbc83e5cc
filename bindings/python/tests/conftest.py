"""Fixtures of the Python tests: the stores (a fresh SQLite file, a real
redis-server started for the session), a key prefix unique to each test,
and the C++ peer binary."""

import os
import shutil
import sys
import uuid

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import idem  # noqa: E402
from servers import RedisServer, skip_or_fail  # noqa: E402

STORES = ["sqlite", "redis"]


@pytest.fixture(scope="session")
def redis_server():
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture
def prefix():
    """A key prefix of this test alone, so that tests sharing a Redis start clean."""
    return f"idem-py-test:{uuid.uuid4().hex[:12]}:"


@pytest.fixture(params=STORES)
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/idem.db"
    return request.getfixturevalue("redis_server").url


@pytest.fixture
def checker(store_url, prefix):
    return idem.IdempotencyChecker(store_url, key_prefix=prefix)


@pytest.fixture(scope="session")
def peer_binary():
    path = os.environ.get("IDEM_PY_PEER")
    if not path:
        here = os.path.dirname(__file__)
        guess = os.path.join(here, "..", "..", "..", "build", "ci", "bindings", "python", "idem_py_peer")
        path = guess if os.path.exists(guess) else shutil.which("idem_py_peer")
    if not path or not os.path.exists(path):
        skip_or_fail("idem_py_peer not built (set IDEM_PY_PEER)")
    return path
