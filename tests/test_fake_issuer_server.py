"""FakeIssuer: serving over loopback HTTP, and the in-process transport's limits."""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from resource_guard.testing import FakeIssuer
from tests.fake_issuer_support import FAKE_ISSUER, GOOD, TLS, verify

pytestmark = FAKE_ISSUER

# Serving ----------------------------------------------------------------------------------


def test_serve_points_urls_and_tokens_at_loopback(fake: FakeIssuer) -> None:
    with fake.serve() as served:
        assert served is fake
        assert fake.port is not None
        base = f"http://127.0.0.1:{fake.port}"
        assert fake.issuer == base
        assert fake.jwks_uri == base + "/jwks.json"
        assert fake.token_endpoint == base + "/token"
        assert fake.discovery_url == base + "/.well-known/openid-configuration"
        token = fake.mint()
        with httpx.Client(verify=TLS) as client:
            assert client.get(fake.discovery_url).json()["issuer"] == base
        assert verify(fake, token)["iss"] == base
    assert fake.issuer == "https://issuer.example.test"
    assert fake.port is None


async def test_serve_works_with_async_with(fake: FakeIssuer) -> None:
    async with fake.serve(), httpx.AsyncClient(verify=TLS) as client:
        reply = await client.get(fake.jwks_uri)
        assert reply.json() == fake.jwks()
    assert fake.port is None


def test_serve_cannot_nest(fake: FakeIssuer) -> None:
    with fake.serve(), pytest.raises(RuntimeError), fake.serve():
        pass  # pragma: no cover


@pytest.mark.parametrize(
    ("port", "error"),
    [(-1, ValueError), (65536, ValueError), (True, TypeError), ("80", TypeError)],
    ids=["-1", "65536", "True", "80"],
)
def test_serve_refuses_bad_ports(fake: FakeIssuer, port: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="port"):
        fake.serve(port=port)


@pytest.mark.parametrize("kind", ["slow", "drip"])
def test_exit_is_prompt_with_a_stalled_request_in_flight(fake: FakeIssuer, kind: str) -> None:
    fake.fault(kind, delay=30)
    outcome: list[object] = []

    def fetch(url: str) -> None:
        try:
            with httpx.Client(timeout=10, verify=TLS) as client:
                outcome.append(client.get(url).status_code)
        except httpx.HTTPError as exc:
            outcome.append(type(exc))

    with fake.serve():
        worker = threading.Thread(target=fetch, args=(fake.jwks_uri,))
        worker.start()
        for _ in range(200):  # wait (bounded) until the server holds the request
            if fake.jwks_fetches:
                break
            time.sleep(0.01)
        start = time.perf_counter()
    assert time.perf_counter() - start < 2
    worker.join(5)
    assert not worker.is_alive()
    assert len(outcome) == 1
    assert outcome[0] != 200


def test_server_refuses_chunked_and_bad_lengths(fake: FakeIssuer) -> None:
    with fake.serve():
        assert fake.port is not None
        for head in (
            b"POST /token HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
            b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n",
        ):
            with socket.create_connection(("127.0.0.1", fake.port), timeout=5) as sock:
                sock.sendall(head)
                status_line = sock.makefile("rb").readline()
            assert status_line.split()[1] in (b"400", b"411")
    assert fake.counts["token"] == 0


def test_exit_cuts_idle_keep_alive_connections(fake: FakeIssuer) -> None:
    client = httpx.Client(verify=TLS)
    try:
        with fake.serve():
            assert client.get(fake.jwks_uri).status_code == 200  # the connection stays open
            start = time.perf_counter()
        assert time.perf_counter() - start < 2
    finally:
        client.close()


def test_a_client_leaving_mid_reply_is_not_reported(
    fake: FakeIssuer, capfd: pytest.CaptureFixture[str]
) -> None:
    fake.fault("drip", delay=0.005)
    with fake.serve():
        assert fake.port is not None
        with socket.create_connection(("127.0.0.1", fake.port), timeout=5) as sock:
            sock.sendall(b"GET /jwks.json HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(1).startswith(b"H")
        time.sleep(0.1)  # the server keeps writing into the closed connection meanwhile
        fake.clear_faults()
        with httpx.Client(verify=TLS) as client:
            assert client.get(fake.jwks_uri).status_code == 200
    assert capfd.readouterr().err == ""


def test_concurrent_requests_are_all_answered_and_counted() -> None:
    fake = FakeIssuer(algorithm="EdDSA")
    fake.register_client("svc", "secret", scopes=("a",))

    def fetch(index: int) -> tuple[int, str]:
        if index % 2:
            return client.get(fake.jwks_uri).status_code, "jwks"
        reply = client.post(fake.token_endpoint, data=GOOD, auth=("svc", "secret"))
        return reply.status_code, "token"

    with fake.serve(), httpx.Client(verify=TLS) as client, ThreadPoolExecutor(8) as pool:
        results = list(pool.map(fetch, range(80)))
    assert {status for status, _ in results} == {200}
    assert fake.counts == {"jwks": 40, "token": 40}
    assert len(fake.keys) == 1  # the lazily created first key was created once


def test_leaving_twice_is_harmless(fake: FakeIssuer) -> None:
    serving = fake.serve()
    with serving:
        assert fake.port is not None
    serving.__exit__(None, None, None)
    assert fake.port is None


def test_transport_refuses_other_origins(fake: FakeIssuer) -> None:
    with fake.client() as client, pytest.raises(httpx.ConnectError):
        client.get("https://elsewhere.test/jwks.json")


async def test_async_transport_refuses_other_origins(fake: FakeIssuer) -> None:
    async with fake.async_client() as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("http://issuer.example.test/jwks.json")


def test_client_options_are_passed_to_httpx(fake: FakeIssuer) -> None:
    with fake.client(base_url=fake.issuer) as client:
        assert client.get("/jwks.json").json() == fake.jwks()
