"""What the benchmarks share: the issuer they trust, server processes, CPU accounting."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from resource_guard.testing import FakeIssuer

ROOT = Path(__file__).resolve().parent.parent
AUDIENCE = "api://bench"
SCOPES = ("orders:read", "orders:write")
CLIENT_ID = "bench-client"
SERVER_CPU = "0"
"""The core servers are pinned to (``taskset``); load generators get the other one."""
CLIENT_CPU = "1"


def issuer_env(fake: FakeIssuer) -> dict[str, str]:
    """The ``BENCH_*`` variables that point a benchmark app at ``fake`` (served)."""
    return {
        "BENCH_ISSUER": fake.issuer,
        "BENCH_JWKS_URI": fake.jwks_uri,
        "BENCH_AUDIENCE": AUDIENCE,
        "BENCH_PUBLIC_JWK": json.dumps(fake.current_key.public_jwk()),
    }


def pinned(command: list[str], cpu: str) -> list[str]:
    """``command`` pinned to ``cpu`` when taskset exists and the machine has two cores."""
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", cpu, *command]
    return command


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc), NaN elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def http_get(port: int, path: str, headers: Mapping[str, str] | None = None) -> int:
    """The status of one GET on 127.0.0.1 (a fresh connection); 0 when it fails."""
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            head = conn.recv(64)
    except OSError:
        return 0
    parts = head.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


class Server:
    """One benchmark app (``benchmarks.apps``) under uvicorn in its own pinned process."""

    def __init__(self, app: str, env: Mapping[str, str]) -> None:
        self.app = app
        self.port = free_port()
        command = [sys.executable, "-m", "benchmarks.apps", app, str(self.port)]
        # A file, not a pipe: a full pipe would stall the server.
        self._errors = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()
        self._process = subprocess.Popen(
            pinned(command, SERVER_CPU),
            cwd=ROOT,
            env={
                **os.environ,
                **env,
                "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
            },
            stdout=subprocess.DEVNULL,
            stderr=self._errors,
        )
        self.pid = self._process.pid

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until ``/health`` answers 200; raise RuntimeError with the server's stderr."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                break
            if http_get(self.port, "/health") == 200:
                return
            time.sleep(0.05)
        self.stop()
        self._errors.seek(0)
        errors = self._errors.read().decode(errors="replace")
        raise RuntimeError(f"benchmark server {self.app!r} did not start:\n{errors[-2000:]}")

    def cpu_seconds(self) -> float:
        """CPU time the server process has used so far."""
        return cpu_seconds(self.pid)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s)."""
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(5)
        self._errors.close()


@contextlib.contextmanager
def servers(
    specs: Mapping[str, tuple[str, Mapping[str, str]]],
) -> Iterator[dict[str, Server]]:
    """Start every server (label -> (app, environment)), wait for all, stop all at the end."""
    started: dict[str, Server] = {}
    try:
        for label, (app, env) in specs.items():
            started[label] = Server(app, env)
        for server in started.values():
            server.wait_ready()
        yield started
    finally:
        for server in started.values():
            server.stop()
