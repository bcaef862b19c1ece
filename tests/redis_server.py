"""A real Redis server for the tests: Debian's ``redis-server`` on 127.0.0.1 and a unix
socket in a temporary directory, nothing saved to disk, stopped at the end (bounded waits).

Where the binary is missing the tests that need it skip, unless this is root with apt-get:
there ``make test`` installs it first (``make packages``), so missing is a failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

REDIS_SERVER = Path("/usr/bin/redis-server")
STARTUP_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


def require_redis_server(binary: Path = REDIS_SERVER) -> None:
    """Skip without redis-server where it cannot be installed; fail where it should be."""
    if os.access(binary, os.X_OK):
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        pytest.fail(
            f"{binary} missing: `make test` installs Debian's redis-server first "
            "(run `make packages`)"
        )
    pytest.skip(
        f"{binary} missing and not installable here (needs root and apt-get): "
        "apt-get install redis-server"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (at the time of asking)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def ping(path: Path, timeout: float = 0.5) -> bool:
    """True when the server on unix socket ``path`` answers PING."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(timeout)
            connection.connect(str(path))
            connection.sendall(b"PING\r\n")
            return connection.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` process; :meth:`start` waits until it answers, :meth:`stop`
    ends it (terminate, a bounded wait, then kill)."""

    def __init__(self, directory: Path, binary: Path = REDIS_SERVER) -> None:
        self.directory = directory
        self.binary = binary
        self.socket = directory / "redis.sock"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def unix_url(self) -> str:
        """``unix:///.../redis.sock``."""
        return f"unix://{self.socket}"

    def start(self) -> RedisServer:
        self.port = free_port()
        log = self.directory / "redis.log"
        self.process = subprocess.Popen(
            [
                str(self.binary),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--unixsocket",
                str(self.socket),
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                "--logfile",
                str(log),
                "--daemonize",
                "no",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not ping(self.socket):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RuntimeError(f"redis-server did not start:\n{tail}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            stop_process(process)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def stop_process(process: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> None:
    """Terminate ``process`` (a server this test session started), killing it if it does
    not exit within ``timeout`` seconds; nothing when it has exited already."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=timeout)
