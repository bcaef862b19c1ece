"""A representative part of the attack suite over real HTTP: uvicorn on 127.0.0.1 serving
the protected app, the identity provider (and the attacker's server) on 127.0.0.1 too.

Also what only a real server shows: oversized and repeated headers, and a verifier started
by the application's lifespan.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Iterator

import pytest

from resource_guard import TokenVerifier
from resource_guard.testing import FakeClock, FakeIssuer
from tests.loopback import LoopbackServer

from ._harness import AUDIENCE, Guarded, Kit, Req, assert_refused, request_secrets
from .test_attacks import CASES_BY_ID

pytestmark = pytest.mark.slow

OVER_HTTP = [
    "control-valid-rs256",
    "control-valid-eddsa",
    "alg-none-junk-signature",
    "alg-none-no-signature",
    "HS256-keyed-with-rsa-spki-pem",
    "HS256-keyed-with-rsa-jwk-json",
    "jwk-header-legit-kid",
    "jku-attacker-attacker-kid",
    "x5u-attacker-attacker-kid",
    "kid-is-attacker-url",
    "ecdsa-r0-s0",
    "eddsa-s-plus-l",
    "payload-sub-changed",
    "crit-unknown-present",
    "jwe-5-segments",
    "jws-zip-deflate-bomb",
    "pbes2-p2c-bomb-3-segments",
    "signature-padded",
    "header-padded",
    "payload-trailing-bits",
    "dup-header-alg-rs256-none",
    "dup-payload-sub",
    "exp-string",
    "exp-expired-beyond-leeway",
    "iss-trailing-slash",
    "aud-other",
    "typ-dpop+jwt",
    "logout-token-with-our-audience",
    "token-over-16-kib",
    "kid-crlf-header-injection",
    "token-in-query-only",
    "token-in-query-and-header",
    "token-in-form-body-only",
    "two-authorization-headers",
    "basic-scheme",
    "scope-missing-for-admin",
]


@pytest.fixture(scope="module")
def served(legit_issuer: FakeIssuer, security_clock: FakeClock) -> Iterator[tuple[Guarded, str]]:
    """The protected app under uvicorn; its lifespan starts the verifier (keys fetched)."""
    verifier = TokenVerifier(legit_issuer.issuer, AUDIENCE, clock=security_clock)
    app = Guarded(verifier, legit_issuer)
    fetches = legit_issuer.counts["jwks"]
    with LoopbackServer(app.app, log_level="critical") as url:
        assert legit_issuer.counts["jwks"] == fetches + 1  # at start-up, before any request
        yield app, url


@pytest.fixture
async def remote(
    served: tuple[Guarded, str], kit: Kit, tls_context: ssl.SSLContext
) -> AsyncIterator[Guarded]:
    app, url = served
    twin = app.over_http(url, tls_context)
    yield twin
    await twin.client.aclose()


@pytest.mark.parametrize("case_id", OVER_HTTP)
async def test_attack_over_real_http(case_id: str, kit: Kit, remote: Guarded) -> None:
    case = CASES_BY_ID[case_id]
    req = case.build(kit)
    seen = await remote.send(req)
    status, error, _ = case.expect
    if status == 200:
        assert seen.status == 200
        assert seen.handler_calls == 1
        return
    secrets = request_secrets(req) - {"orders:admin"}
    assert_refused(seen, status, error, fetches=0, secrets=secrets)


async def test_a_huge_authorization_header_is_refused_without_a_5xx(
    kit: Kit, remote: Guarded
) -> None:
    seen = await remote.send(Req(authorization=b"Bearer " + b"A" * (256 * 1024)))
    assert seen.status in (400, 401, 413, 431)
    assert seen.handler_calls == 0


async def test_a_thousand_headers_are_refused_or_ignored_without_a_5xx(
    kit: Kit, remote: Guarded
) -> None:
    headers = [(f"x-junk-{n}".encode(), b"v" * 40) for n in range(1000)]
    seen = await remote.send(Req(token=kit.token(key=kit.keys.rogue_rsa), headers=headers))
    assert seen.status in (400, 401, 431)
    assert seen.handler_calls == 0


async def test_headers_a_client_library_would_not_send_are_refused(
    kit: Kit, served: tuple[Guarded, str]
) -> None:
    """Raw bytes on the socket: a header line with a bare CR, and an obs-fold line."""
    app, url = served
    host, port = url.removeprefix("http://").split(":")
    token = kit.token().encode()
    for raw in (
        b"GET /orders HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token + b"\rx\r\n\r\n",
        b"GET /orders HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer\r\n " + token + b"\r\n\r\n",
    ):
        calls = app.calls.count
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(raw)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 5)
        writer.close()
        await writer.wait_closed()
        status = int(status_line.split()[1])
        assert status in (400, 401), status_line
        assert app.calls.count == calls
