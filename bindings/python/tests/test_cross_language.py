"""A Python process and a C++ process (idem_py_peer, the C++ wrapper) on the
same store and the same keys: each key's handler runs once across both
languages, and each side replays the other's result (stored as JSON)."""

import os
import subprocess
import threading
import time

import pytest

from idem import EventEnvelope, IdempotencyChecker, idempotent_event_handler


def envelope(key):
    # The same event as the peer builds: same key, type and payload, so the
    # payload fingerprints agree.
    return EventEnvelope(event_id=key, event_type="cross.language", payload={"key": key})


def run_peer(peer_binary, store_url, prefix, keys, log, threads=4, handler_ms=2):
    return subprocess.Popen(
        [peer_binary, "--store", store_url, "--prefix", prefix, "--scope", "x", "--keys", ",".join(keys),
         "--log", str(log), "--threads", str(threads), "--handler-ms", str(handler_ms)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def peer_answers(proc, timeout=60):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return dict(line.split("\t", 1) for line in out.splitlines())


def test_python_and_cpp_race_on_the_same_keys(store_url, prefix, peer_binary, tmp_path):
    import json

    keys = [f"xl-{i}" for i in range(150)]
    log = tmp_path / "runs.log"
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    checker = IdempotencyChecker(store_url, key_prefix=prefix)

    @idempotent_event_handler(checker=checker, scope="x")
    def handle(e):
        os.write(fd, f"py {e.event_id}\n".encode())
        time.sleep(0.002)
        return {"by": "py", "key": e.event_id}

    answers: dict[str, dict] = {}
    lock = threading.Lock()

    def worker(order):
        for k in order:
            while True:
                try:
                    r = handle(envelope(k))
                    break
                except Exception as exc:  # EventInProgressError: redeliver
                    assert type(exc).__name__ == "EventInProgressError", exc
            with lock:
                assert answers.setdefault(k, r) == r

    peer = run_peer(peer_binary, store_url, prefix, keys, log)
    threads = [threading.Thread(target=worker, args=(list(reversed(keys)) if i % 2 else keys[i * 37:] + keys[:i * 37],))
               for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cpp = {k: json.loads(v) for k, v in peer_answers(peer).items()}
    os.close(fd)

    lines = log.read_text().splitlines()
    ran = [line.split(" ", 1)[1] for line in lines]
    assert sorted(ran) == sorted(keys), "some key ran twice or never"
    by_language = {"py": sum(1 for line in lines if line.startswith("py ")),
                   "cpp": sum(1 for line in lines if line.startswith("cpp "))}
    assert by_language["py"] > 0 and by_language["cpp"] > 0, f"the race was one-sided: {by_language}"
    # Both sides saw the one execution's result for every key, whichever
    # language produced it.
    assert cpp == answers
    for line in lines:
        language, key = line.split(" ", 1)
        assert answers[key]["by"] == language


def test_each_side_replays_the_others_result(store_url, prefix, peer_binary, tmp_path):
    import json

    log = tmp_path / "runs.log"
    # C++ first: Python replays the C++ result.
    cpp = peer_answers(run_peer(peer_binary, store_url, prefix, ["from-cpp"], log, threads=1))
    assert json.loads(cpp["from-cpp"]) == {"by": "cpp", "key": "from-cpp"}
    checker = IdempotencyChecker(store_url, key_prefix=prefix)
    ran = []
    handle = idempotent_event_handler(lambda e: ran.append(1) or {"by": "py"}, checker=checker, scope="x")
    assert handle(envelope("from-cpp")) == {"by": "cpp", "key": "from-cpp"} and not ran
    # Python first: the C++ wrapper replays the Python result, unicode included.
    manual = checker.with_options(scope="x")
    claim = manual.mark_processing(envelope("from-py"))
    manual.mark_completed(claim, {"by": "py", "list": [1, 2.5, None], "text": "naïve ✓"})
    cpp = peer_answers(run_peer(peer_binary, store_url, prefix, ["from-py"], log, threads=1))
    assert json.loads(cpp["from-py"]) == {"by": "py", "list": [1, 2.5, None], "text": "naïve ✓"}
    assert "cpp from-py" not in log.read_text()
