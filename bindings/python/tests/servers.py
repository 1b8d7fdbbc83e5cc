"""Real servers for the Python tests, as tests/support/server_process.h does
it for the C++ ones: a free loopback port, a temporary directory, bounded
readiness polling, and SIGTERM, then SIGKILL, then wait. A missing binary
skips the test, unless IDEM_REQUIRE_SERVERS=1 (CI) makes it a failure."""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest


def servers_required() -> bool:
    return os.environ.get("IDEM_REQUIRE_SERVERS") == "1"


def skip_or_fail(message: str):
    if servers_required():
        pytest.fail(f"{message} (IDEM_REQUIRE_SERVERS=1 turns this skip into a failure)")
    pytest.skip(message)


def find_binary(name: str, env_override: str) -> str | None:
    override = os.environ.get(env_override)
    if override:
        return override
    return shutil.which(name)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tcp_ready(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class ServerProcess:
    """A child server process in its own temp dir on 127.0.0.1."""

    def __init__(self, argv, port: int, work_dir: str, name: str, start_timeout: float = 15.0,
                 env: dict | None = None):
        self.port = port
        self.work_dir = work_dir
        self.name = name
        self._log = open(os.path.join(work_dir, f"{name}.log"), "wb")
        self.proc = subprocess.Popen(argv, cwd=work_dir, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL,
                                     env=None if env is None else {**os.environ, **env})
        deadline = time.monotonic() + start_timeout
        while not tcp_ready(port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log_tail()
                self.stop()
                raise RuntimeError(f"{name} did not start on port {port}:\n{tail}")
            time.sleep(0.02)

    def log_tail(self, size: int = 4096) -> str:
        self._log.flush()
        with open(self._log.name, "rb") as f:
            data = f.read()
        return data[-size:].decode(errors="replace")

    def stop(self, grace: float = 5.0):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


class RedisServer:
    def __init__(self):
        binary = find_binary("redis-server", "IDEM_REDIS_SERVER")
        if binary is None:
            skip_or_fail("redis-server not found (set IDEM_REDIS_SERVER)")
        self._dir = tempfile.TemporaryDirectory(prefix="idem-py-redis-")
        self.port = free_port()
        self.server = ServerProcess(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self._dir.name], self.port, self._dir.name, "redis-server")
        self.url = f"redis://127.0.0.1:{self.port}"

    def command(self, *args):
        """One command through a raw RESP connection (no client library)."""
        payload = f"*{len(args)}\r\n".encode()
        for a in args:
            a = str(a).encode()
            payload += b"$%d\r\n%s\r\n" % (len(a), a)
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(payload)
            return s.recv(65536)

    def stop(self):
        self.server.stop()
        self._dir.cleanup()
