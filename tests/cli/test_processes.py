"""For real: ``python -m resource_guard`` serving in one process, verifying in another."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ._harness import mint, run

# -- for real: a subprocess serving, another verifying over loopback ------------------------------


def test_serve_and_verify_as_real_processes(
    existing_key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {**os.environ, "RESOURCE_GUARD_KEY_FILE": str(existing_key_file)}
    command = [sys.executable, "-m", "resource_guard"]
    with subprocess.Popen(
        [*command, "issuer", "serve", "--port", "0", "--audience", "api://orders"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as server:
        errors = serve_and_verify(server, command, env, capsys)
    assert server.returncode == 0
    assert errors == ""


def serve_and_verify(
    server: subprocess.Popen[str],
    command: list[str],
    env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> str:
    """Mint tokens (in-process, same key file) and verify them over loopback against the
    running ``server`` (in another process, and in this one); stop it; return its stderr."""
    try:
        lines: queue.Queue[str] = queue.Queue()

        def read() -> None:
            for line in server.stdout or ():
                lines.put(line)

        threading.Thread(target=read, daemon=True).start()
        issuer = ""
        deadline = time.monotonic() + 30
        while not issuer and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line.startswith("  issuer "):
                issuer = line.split()[-1]
        assert issuer.startswith("http://127.0.0.1:"), "the server printed no issuer URL"

        def cli_run(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [*command, *argv],
                input=stdin,
                capture_output=True,
                text=True,
                env=env,
                timeout=60,
                check=False,
            )

        token = mint(capsys, "--issuer", issuer, "--audience", "api://orders")
        verified = cli_run(
            "verify", "-", "--issuer", issuer, "--audience", "api://orders", stdin=token + "\n"
        )
        assert verified.returncode == 0, verified.stderr
        assert verified.stdout.startswith("valid token")
        wrong = mint(capsys, "--issuer", issuer, "--audience", "api://elsewhere")
        status, _, err = run(
            capsys, "verify", wrong, "--issuer", issuer, "--audience", "api://orders"
        )
        assert status == 1
        assert err.startswith("resource-guard: error: invalid token (invalid_audience)")
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        finally:
            if server.poll() is None:  # pragma: no cover - only if SIGTERM was ignored
                server.kill()
                server.wait(timeout=10)
    assert server.stderr is not None
    return server.stderr.read()
