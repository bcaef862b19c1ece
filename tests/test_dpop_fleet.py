"""A fleet of two uvicorn processes of one DPoP-protected app (tests/dpop_fleet_app.py):
with a shared Redis replay store, a proof accepted by one process is refused by the other;
with the default in-memory stores, the same replay succeeds, which is why a fleet needs
the shared store. Both processes see one public URL, as behind a load balancer."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from resource_guard.dpop import DPoPKey
from resource_guard.testing import FakeIssuer
from tests.redis_server import RedisServer, free_port, require_redis_server, stop_process

ROOT = Path(__file__).resolve().parent.parent
PUBLIC_URL = "https://orders.fleet.test"
ORDERS = PUBLIC_URL + "/orders"
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


@pytest.fixture
def issuer() -> Iterator[FakeIssuer]:
    fake = FakeIssuer(audience="api://orders", algorithm="ES256")
    with fake.serve():
        yield fake


@pytest.fixture(scope="module")
def key() -> DPoPKey:
    return DPoPKey.generate()


def start(environ: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "tests.dpop_fleet_app:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--lifespan",
        "on",
    ]
    with log.open("wb") as output:
        return subprocess.Popen(
            command,
            cwd=ROOT,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def wait_ready(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the fleet app did not start:\n{log.read_text(errors='replace')}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url + "/health", timeout=1.0).status_code == 200:
                return
        time.sleep(0.05)


@contextlib.contextmanager
def fleet(issuer: FakeIssuer, tmp_path: Path, redis_url: str | None) -> Iterator[list[str]]:
    """Two processes of the app; yields their own base URLs (what a load balancer reaches)."""
    environ = {**os.environ, **issuer.environ(), "FLEET_PUBLIC_URL": PUBLIC_URL}
    environ.pop("FLEET_REDIS_URL", None)
    if redis_url is not None:
        environ["FLEET_REDIS_URL"] = redis_url
        environ["FLEET_REDIS_NAMESPACE"] = f"fleet:{uuid.uuid4().hex}:"
    members: list[tuple[subprocess.Popen[bytes], str, Path]] = []
    try:
        for index in range(2):
            port, log = free_port(), tmp_path / f"app-{index}.log"
            members.append((start(environ, port, log), f"http://127.0.0.1:{port}", log))
        for process, url, log in members:
            wait_ready(process, url, log)
        yield [url for _, url, _ in members]
    finally:
        for process, _, _ in members:
            stop_process(process, STOP_TIMEOUT)


def challenge(response: httpx.Response) -> str:
    return str(response.headers.get("www-authenticate", ""))


def test_a_shared_redis_refuses_a_proof_replayed_to_another_process(
    issuer: FakeIssuer, key: DPoPKey, tmp_path: Path
) -> None:
    require_redis_server()
    (tmp_path / "redis").mkdir()
    with (
        RedisServer(tmp_path / "redis") as redis,
        fleet(issuer, tmp_path, redis.url) as (first, second),
    ):
        headers = issuer.dpop_headers(key, "GET", ORDERS)
        accepted = httpx.get(first + "/orders", headers=headers)
        assert accepted.status_code == 200, challenge(accepted)
        replayed = httpx.get(second + "/orders", headers=headers)
        assert replayed.status_code == 401
        assert 'error="invalid_dpop_proof"' in challenge(replayed)
        token = headers["Authorization"].removeprefix("DPoP ")
        fresh = issuer.dpop_headers(key, "GET", ORDERS, token=token)
        assert httpx.get(second + "/orders", headers=fresh).status_code == 200

        redis.stop()  # the store is gone: the fleet fails closed
        down = httpx.get(first + "/orders", headers=issuer.dpop_headers(key, "GET", ORDERS))
        assert down.status_code == 503
        assert int(down.headers["retry-after"]) >= 1


def test_without_a_shared_store_a_replay_to_another_process_succeeds(
    issuer: FakeIssuer, key: DPoPKey, tmp_path: Path
) -> None:
    """The risk of the default memory store behind a load balancer, shown: each process
    knows only the proofs it saw itself."""
    with fleet(issuer, tmp_path, None) as (first, second):
        headers = issuer.dpop_headers(key, "GET", ORDERS)
        assert httpx.get(first + "/orders", headers=headers).status_code == 200
        replayed = httpx.get(second + "/orders", headers=headers)
        assert replayed.status_code == 200  # accepted: the second process never saw it
        again = httpx.get(first + "/orders", headers=headers)
        assert again.status_code == 401  # the first one remembers
        assert 'error="invalid_dpop_proof"' in challenge(again)
