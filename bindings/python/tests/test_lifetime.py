"""Interpreter shutdown with work in flight: the process must exit promptly
and cleanly, whatever the store threads are doing."""

import subprocess
import sys
import textwrap

import pytest


def run(code, *args, timeout=30):
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
                         timeout=timeout)
    return out


def test_exit_while_async_calls_are_in_flight(store_url, prefix):
    out = run("""
        import asyncio, sys, idem
        checker = idem.IdempotencyChecker(sys.argv[1], key_prefix=sys.argv[2])

        @idem.idempotent_event_handler(checker=checker)
        async def handle(e):
            await asyncio.sleep(10)   # still running when the loop goes away

        async def main():
            for i in range(200):
                asyncio.ensure_future(handle(idem.EventEnvelope(event_id=f"e{i}")))
            await asyncio.sleep(0.2)  # claims answered, handlers in flight

        asyncio.run(main())           # cancels them: their claims are abandoned (FAILED)
        record = checker.get_processing_record("e0")
        print(record.status if record else None)
    """, store_url, prefix)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "FAILED"
    assert "Traceback" not in out.stderr


def test_exit_while_a_thread_waits_for_the_store(redis_server, prefix):
    out = run("""
        import socket, sys, threading, time, idem
        checker = idem.IdempotencyChecker(sys.argv[1], key_prefix=sys.argv[2])
        handler = idem.idempotent_event_handler(lambda e: "ok", checker=checker)
        handler(idem.EventEnvelope(event_id="warm"))
        s = socket.create_connection(("127.0.0.1", int(sys.argv[3])))
        s.sendall(b"*3\\r\\n$6\\r\\nCLIENT\\r\\n$5\\r\\nPAUSE\\r\\n$3\\r\\n800\\r\\n")
        s.recv(100)
        threading.Thread(target=lambda: handler(idem.EventEnvelope(event_id="late")), daemon=True).start()
        time.sleep(0.1)
        print("exiting", flush=True)  # the daemon thread is inside a store call, GIL released
    """, redis_server.url, prefix, str(redis_server.port))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "exiting"
