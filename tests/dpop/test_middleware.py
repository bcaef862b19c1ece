"""DPoP through BearerAuthMiddleware: schemes, proofs, replay, nonces, replies, decisions."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette

from resource_guard import (
    AccessToken,
    Decision,
    ReplayStoreUnavailableError,
    TokenVerifier,
)
from resource_guard.dpop import DPoPKey, DPoPPolicy, MemoryReplayStore, NonceSource
from resource_guard.middleware import BearerAuthMiddleware
from resource_guard.testing import FakeIssuer
from tests.asgi_client import Result, call, scope, websocket
from tests.dpop.proofs import ABSENT, ProofKey
from tests.helpers import ORDERS_AUDIENCE, bearer
from tests.middleware._harness import DPOP_ALGS, assert_refusal, bare, protect

URL = "http://api.test/orders"
"""What the test client's requests are: scheme http, Host api.test, path /orders."""
DPOP_BARE = f'DPoP realm="api", algs="{DPOP_ALGS}"'.encode()


@pytest.fixture
def key() -> DPoPKey:
    return DPoPKey.generate()


def bound(fake: FakeIssuer, key: DPoPKey, **options: Any) -> str:
    """A token of ``fake`` bound to ``key`` (``cnf.jkt``)."""
    return fake.mint(claims={"cnf": {"jkt": key.thumbprint}}, **options)


def dpop(token: str, proof: str | None, scheme: bytes = b"DPoP") -> list[tuple[bytes, bytes]]:
    headers = [(b"authorization", scheme + b" " + token.encode())]
    if proof is not None:
        headers.append((b"dpop", proof.encode()))
    return headers


def verifier_of(fake: FakeIssuer, dpop: Any = "allowed") -> TokenVerifier:
    return TokenVerifier(fake.issuer, ORDERS_AUDIENCE, http_client=fake.async_client(), dpop=dpop)


def decisions_of(fake: FakeIssuer, **options: Any) -> tuple[Starlette, list[Decision]]:
    seen: list[Decision] = []
    options.setdefault("verifier", verifier_of(fake))
    verifier = options.pop("verifier")
    return protect(verifier, on_decision=seen.append, **options), seen


def dpop_challenge(result: Result) -> bytes:
    """The DPoP challenge of a refusal (the last WWW-Authenticate line)."""
    lines = result.header_lines(b"www-authenticate")
    assert lines[-1].startswith(b'DPoP realm="api", algs="')
    return lines[-1]


# -- the DPoP scheme with a bound token ----------------------------------------------------


@pytest.mark.parametrize("scheme", [b"DPoP", b"dpop", b"DPOP"])
async def test_a_bound_token_with_a_valid_proof_is_accepted(
    fake: FakeIssuer, key: DPoPKey, scheme: bytes
) -> None:
    app, seen = decisions_of(fake)
    token = bound(fake, key)
    result = await call(app, headers=dpop(token, key.proof("GET", URL, access_token=token), scheme))
    assert result.status == 200
    assert result.json()["subject"] == "user-123"
    assert [d.reason for d in seen] == ["verified"]


async def test_the_token_is_verified_once_but_every_request_needs_a_fresh_proof(
    fake: FakeIssuer, key: DPoPKey
) -> None:
    verifier = verifier_of(fake)
    app = protect(verifier)
    token = bound(fake, key)
    proof = key.proof("GET", URL, access_token=token)
    assert (await call(app, headers=dpop(token, proof))).status == 200
    assert verifier.cached(token) is not None  # the verification is cached
    again = await call(app, headers=dpop(token, key.proof("GET", URL, access_token=token)))
    assert again.status == 200
    replayed = await call(app, headers=dpop(token, proof))
    assert_refusal(replayed, 401, "invalid_dpop_proof")
    assert b'error_description="the DPoP proof was used before"' in dpop_challenge(replayed)


async def test_a_proof_replayed_concurrently_passes_once(fake: FakeIssuer, key: DPoPKey) -> None:
    app = protect(verifier_of(fake))
    token = bound(fake, key)
    headers = dpop(token, key.proof("GET", URL, access_token=token))
    results = await asyncio.gather(*(call(app, headers=headers) for _ in range(5)))
    assert sorted(result.status for result in results) == [200, 401, 401, 401, 401]


Breaker = Callable[[ProofKey, str], str]

BROKEN: dict[str, tuple[Breaker, str]] = {
    "htm": (lambda k, t: k.proof("POST", URL, token=t), "'htm'"),
    "htu-host": (lambda k, t: k.proof("GET", "http://evil.test/orders", token=t), "'htu'"),
    "htu-scheme": (lambda k, t: k.proof("GET", "https://api.test/orders", token=t), "'htu'"),
    "htu-path": (lambda k, t: k.proof("GET", "http://api.test/other", token=t), "'htu'"),
    "ath-missing": (lambda k, t: k.proof("GET", URL), "no 'ath'"),
    "ath-wrong": (lambda k, t: k.proof("GET", URL, token=t + "x"), "'ath' does not match"),
    "iat-old": (lambda k, t: k.proof("GET", URL, token=t, claims={"iat": k.now - 400}), "too old"),
    "typ": (lambda k, t: k.proof("GET", URL, token=t, header={"typ": "JWT"}), "'typ'"),
    "jwk-private": (
        lambda k, t: k.proof("GET", URL, token=t, header={"jwk": {**k.jwk, "d": "AAAA"}}),
        "private key material",
    ),
    "alg-hs256": (
        lambda k, t: k.proof("GET", URL, token=t, header={"alg": "HS256"}),
        "'HS256' is not accepted",
    ),
    "jti-missing": (lambda k, t: k.proof("GET", URL, token=t, claims={"jti": ABSENT}), "'jti'"),
    "not-a-jws": (lambda k, t: "not-a-proof", "not a compact JWS"),
    "oversized": (lambda k, t: k.proof("GET", URL, token=t, claims={"x": "y" * 9000}), "larger"),
}


@pytest.mark.parametrize(("breaker", "description"), BROKEN.values(), ids=BROKEN.keys())
async def test_a_broken_proof_is_refused_with_invalid_dpop_proof(
    fake: FakeIssuer, breaker: Breaker, description: str
) -> None:
    key = ProofKey(now=time.time())
    app, seen = decisions_of(fake)
    token = fake.mint(claims={"cnf": {"jkt": key.jkt}})
    result = await call(app, headers=dpop(token, breaker(key, token)))
    assert_refusal(result, 401, "invalid_dpop_proof")
    assert description in result.json()["error_description"]
    challenge = dpop_challenge(result)
    assert b'error="invalid_dpop_proof"' in challenge
    assert result.header_lines(b"www-authenticate")[0] == b'Bearer realm="api"'
    assert [(d.reason, d.status, d.subject) for d in seen] == [
        ("invalid_dpop_proof", 401, "user-123")
    ]


async def test_a_proof_by_another_key_is_refused(fake: FakeIssuer, key: DPoPKey) -> None:
    app, seen = decisions_of(fake)
    token = bound(fake, key)
    other = DPoPKey.generate().proof("GET", URL, access_token=token)
    result = await call(app, headers=dpop(token, other))
    assert_refusal(result, 401, "invalid_dpop_proof")
    assert [d.reason for d in seen] == ["dpop_key_mismatch"]


@pytest.mark.parametrize(
    ("proofs", "reason"),
    [
        ([], "dpop_proof_missing"),
        ([b""], "dpop_proof_missing"),
        (["good", "good"], "dpop_proof_duplicated"),
        ([b"\xff\xfe"], "invalid_dpop_proof"),
    ],
    ids=["missing", "empty", "two", "not-ascii"],
)
async def test_the_dpop_header_must_be_one_readable_value(
    fake: FakeIssuer, key: DPoPKey, proofs: list[Any], reason: str
) -> None:
    app, seen = decisions_of(fake)
    token = bound(fake, key)
    headers = dpop(token, None)
    for proof in proofs:
        value = key.proof("GET", URL, access_token=token).encode() if proof == "good" else proof
        headers.append((b"DPoP", value))
    result = await call(app, headers=headers)
    assert_refusal(result, 401, "invalid_dpop_proof")
    assert [d.reason for d in seen] == [reason]


# -- which scheme a token may use ----------------------------------------------------------


async def test_a_bound_token_sent_as_bearer_is_a_downgrade(fake: FakeIssuer, key: DPoPKey) -> None:
    app, seen = decisions_of(fake)
    token = bound(fake, key)
    for headers in (
        bearer(token),
        dpop(token, key.proof("GET", URL, access_token=token), b"Bearer"),
    ):
        result = await call(app, headers=headers)
        assert_refusal(result, 401, "invalid_token")
        assert b'error="invalid_token"' in dpop_challenge(result)
        assert b"send it with the DPoP scheme" in dpop_challenge(result)
    assert [d.reason for d in seen] == ["dpop_downgrade", "dpop_downgrade"]


async def test_a_cached_bound_token_sent_as_bearer_is_still_a_downgrade(
    fake: FakeIssuer, key: DPoPKey
) -> None:
    app = protect(verifier_of(fake))
    token = bound(fake, key)
    assert (
        await call(app, headers=dpop(token, key.proof("GET", URL, access_token=token)))
    ).status == 200
    assert_refusal(await call(app, headers=bearer(token)), 401, "invalid_token")


async def test_a_plain_token_with_the_dpop_scheme_is_refused(
    fake: FakeIssuer, key: DPoPKey
) -> None:
    app, seen = decisions_of(fake)
    token = fake.mint()
    result = await call(app, headers=dpop(token, key.proof("GET", URL, access_token=token)))
    assert_refusal(result, 401, "invalid_token")
    assert b"not bound to a DPoP key" in dpop_challenge(result)
    assert [d.reason for d in seen] == ["dpop_unbound_token"]


async def test_a_plain_token_as_bearer_still_works_and_a_dpop_header_is_ignored(
    fake: FakeIssuer, key: DPoPKey
) -> None:
    app = protect(verifier_of(fake))
    token = fake.mint()
    assert (await call(app, headers=bearer(token))).status == 200
    headers = [*bearer(token), (b"dpop", b"whatever")]
    assert (await call(app, headers=headers)).status == 200


async def test_a_token_bound_otherwise_passes_as_bearer(fake: FakeIssuer) -> None:
    """cnf without jkt (an mTLS binding, RFC 8705) is not DPoP's to judge."""
    app = protect(verifier_of(fake))
    token = fake.mint(claims={"cnf": {"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}})
    assert (await call(app, headers=bearer(token))).status == 200


async def test_required_refuses_plain_bearer_tokens(fake: FakeIssuer, key: DPoPKey) -> None:
    app, seen = decisions_of(fake, verifier=verifier_of(fake, "required"))
    result = await call(app, headers=bearer(fake.mint()))
    assert_refusal(result, 401, "invalid_token")
    assert result.header_lines(b"www-authenticate")[0].startswith(b"DPoP ")
    assert b"requires DPoP-bound tokens" in dpop_challenge(result)
    missing = await call(app)
    assert missing.header_lines(b"www-authenticate") == [DPOP_BARE]
    assert missing.json()["error_description"] == "a DPoP-bound token is required"
    token = bound(fake, key)
    assert (
        await call(app, headers=dpop(token, key.proof("GET", URL, access_token=token)))
    ).status == 200
    assert [d.reason for d in seen] == ["dpop_required", "missing_token", "verified"]


async def test_off_accepts_no_dpop_and_no_bound_token(fake: FakeIssuer, key: DPoPKey) -> None:
    app, seen = decisions_of(fake, verifier=verifier_of(fake, "off"))
    token = bound(fake, key)
    proof = key.proof("GET", URL, access_token=token)
    for headers in (dpop(token, proof), bearer(token), dpop(fake.mint(), proof)):
        result = await call(app, headers=headers)
        assert_refusal(result, 401, "invalid_token")
        assert result.header_lines(b"www-authenticate") == [
            b'Bearer realm="api", error="invalid_token", '
            b'error_description="DPoP-bound tokens are not accepted here"'
        ]
    assert (await call(app, headers=bearer(fake.mint()))).status == 200
    missing = await call(app)
    assert missing.header_lines(b"www-authenticate") == [b'Bearer realm="api"']
    assert [d.reason for d in seen][:3] == ["dpop_disabled"] * 3


async def test_a_missing_token_gets_both_bare_challenges(fake: FakeIssuer) -> None:
    result = await call(protect(verifier_of(fake)))
    assert_refusal(result, 401, "unauthorized")
    assert result.header_lines(b"www-authenticate") == bare()


async def test_an_invalid_token_with_the_dpop_scheme_gets_a_dpop_challenge(
    fake: FakeIssuer, key: DPoPKey
) -> None:
    token = bound(fake, key, expires_in=-100)
    result = await call(
        protect(verifier_of(fake)), headers=dpop(token, key.proof("GET", URL, access_token=token))
    )
    assert_refusal(result, 401, "invalid_token")
    assert b'error="invalid_token", error_description="the token expired"' in dpop_challenge(result)


@pytest.mark.parametrize(
    ("value", "description", "problem"),
    [
        (b"DPoP ", "the DPoP scheme needs a token", "empty_token"),
        (b"DPoP a b", "malformed DPoP token", "malformed_dpop_token"),
    ],
    ids=["no-token", "malformed-token"],
)
async def test_a_malformed_dpop_scheme_is_a_bad_request_on_the_dpop_challenge(
    fake: FakeIssuer, value: bytes, description: str, problem: str
) -> None:
    """RFC 9449 §7.1: a request using the DPoP scheme gets its error on a DPoP challenge."""
    app, seen = decisions_of(fake)
    result = await call(app, headers=[(b"authorization", value)])
    assert_refusal(result, 400, "invalid_request")
    assert result.json()["error_description"] == description
    assert result.header_lines(b"www-authenticate") == [
        b'Bearer realm="api"',
        DPOP_BARE + f', error="invalid_request", error_description="{description}"'.encode(),
    ]
    assert [d.details.get("problem") for d in seen] == [problem]


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("allowed", [b'Bearer realm="api", error="invalid_request", error_description="%s"']),
        ("required", [DPOP_BARE + b', error="invalid_request", error_description="%s"']),
        ("off", [b'Bearer realm="api", error="invalid_request", error_description="%s"']),
    ],
)
async def test_a_malformed_bearer_request_names_the_schemes_accepted(
    fake: FakeIssuer, mode: str, expected: list[bytes]
) -> None:
    """With DPoP required, no Bearer challenge: the error goes on the DPoP one."""
    app = protect(verifier_of(fake, mode))
    result = await call(app, headers=[(b"authorization", b"Bearer a b")])
    assert_refusal(result, 400, "invalid_request")
    assert result.header_lines(b"www-authenticate") == [
        line % b"malformed bearer token" for line in expected
    ]
    dpop_off = await call(app, headers=[(b"authorization", b"DPoP ")])
    assert_refusal(dpop_off, 400, "invalid_request")
    if mode == "off":  # no DPoP challenge where DPoP is not accepted
        assert dpop_off.header_lines(b"www-authenticate") == [
            b'Bearer realm="api", error="invalid_request", '
            b'error_description="the DPoP scheme needs a token"'
        ]


async def test_a_custom_verifier_without_a_policy_still_holds_bound_tokens(
    fake: FakeIssuer, key: DPoPKey
) -> None:
    real = verifier_of(fake)

    class Custom:
        async def verify(self, token: str) -> AccessToken:
            return await real.verify(token)

        async def start(self) -> None: ...

        async def aclose(self) -> None: ...

    app = protect(Custom())
    token = bound(fake, key)
    assert_refusal(await call(app, headers=bearer(token)), 401, "invalid_token")
    proof = key.proof("GET", URL, access_token=token)
    assert (await call(app, headers=dpop(token, proof))).status == 200
    assert_refusal(await call(app, headers=dpop(token, proof)), 401, "invalid_dpop_proof")


async def test_a_verifier_policy_that_is_no_policy_is_ignored(
    fake: FakeIssuer, key: DPoPKey
) -> None:
    real = verifier_of(fake, "off")

    class Odd:
        async def verify(self, token: str) -> AccessToken:
            return await real.verify(token)

        def dpop_policy(self, token: AccessToken | None = None) -> str:
            return "off"

        async def start(self) -> None: ...

        async def aclose(self) -> None: ...

    token = bound(fake, key)
    result = await call(
        protect(Odd()), headers=dpop(token, key.proof("GET", URL, access_token=token))
    )
    assert result.status == 200  # the default "allowed" policy applied


# -- nonces --------------------------------------------------------------------------------


async def test_nonces_are_demanded_then_accepted_and_rotated(
    fake: FakeIssuer, key: DPoPKey
) -> None:
    now = [1_800_000_000.0]
    nonces = NonceSource(b"k" * 16, window=60, clock=lambda: now[0])
    app, seen = decisions_of(fake, verifier=verifier_of(fake, DPoPPolicy(nonces=nonces)))
    token = bound(fake, key)
    first = await call(app, headers=dpop(token, key.proof("GET", URL, access_token=token)))
    assert_refusal(first, 401, "use_dpop_nonce")
    nonce = first.header(b"dpop-nonce")
    assert nonce == nonces.current().encode()
    assert b'error="use_dpop_nonce"' in dpop_challenge(first)
    with_nonce = key.proof("GET", URL, access_token=token, nonce=nonce.decode())
    ok = await call(app, headers=dpop(token, with_nonce))
    assert ok.status == 200
    assert ok.header(b"dpop-nonce") is None
    now[0] += 60  # the nonce is the previous window's now: accepted, and a fresh one sent
    stale = key.proof("GET", URL, access_token=token, nonce=nonce.decode())
    rotated = await call(app, headers=dpop(token, stale))
    assert rotated.status == 200
    assert rotated.header(b"dpop-nonce") == nonces.current().encode() != nonce
    now[0] += 60  # two windows on: refused, with the current nonce
    too_old = await call(
        app, headers=dpop(token, key.proof("GET", URL, access_token=token, nonce=nonce.decode()))
    )
    assert_refusal(too_old, 401, "use_dpop_nonce")
    assert [d.reason for d in seen] == ["use_dpop_nonce", "verified", "verified", "use_dpop_nonce"]


# -- the replay store ------------------------------------------------------------------------


async def test_a_replay_store_that_is_down_gives_503(fake: FakeIssuer, key: DPoPKey) -> None:
    class Down:
        async def seen_before(self, jti: str, expires_in: float) -> bool:
            raise ReplayStoreUnavailableError("redis is down", retry_after=7)

        async def aclose(self) -> None: ...

    app, seen = decisions_of(fake, verifier=verifier_of(fake, DPoPPolicy(replay_store=Down())))
    token = bound(fake, key)
    result = await call(app, headers=dpop(token, key.proof("GET", URL, access_token=token)))
    assert_refusal(result, 503, "temporarily_unavailable")
    assert result.header(b"retry-after") == b"7"
    assert [d.reason for d in seen] == ["replay_store_unavailable"]


async def test_a_replay_store_that_breaks_gives_503(fake: FakeIssuer, key: DPoPKey) -> None:
    class Broken:
        async def seen_before(self, jti: str, expires_in: float) -> bool:
            raise RuntimeError("bug")

        async def aclose(self) -> None: ...

    app, seen = decisions_of(fake, verifier=verifier_of(fake, DPoPPolicy(replay_store=Broken())))
    token = bound(fake, key)
    result = await call(app, headers=dpop(token, key.proof("GET", URL, access_token=token)))
    assert_refusal(result, 503, "temporarily_unavailable")
    assert [d.reason for d in seen] == ["verifier_error"]


async def test_a_full_memory_store_fails_closed(fake: FakeIssuer, key: DPoPKey) -> None:
    policy = DPoPPolicy(replay_store=MemoryReplayStore(1))
    app = protect(verifier_of(fake, policy))
    token = bound(fake, key)
    assert (
        await call(app, headers=dpop(token, key.proof("GET", URL, access_token=token)))
    ).status == 200
    full = await call(app, headers=dpop(token, key.proof("GET", URL, access_token=token)))
    assert_refusal(full, 503, "temporarily_unavailable")


# -- htu: the request URI as the client saw it -------------------------------------------------


async def send(app: Any, **overrides: Any) -> Result:
    """One GET with scope values overridden (``client``, ``scheme``, ``headers``...)."""
    request = scope(
        "http", path=overrides.pop("path", "/orders"), root_path=overrides.pop("root_path", "")
    )
    request.update(overrides)
    sent: list[Any] = []
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    inbox.put_nowait({"type": "http.request", "body": b"", "more_body": False})

    async def collect(message: Any) -> None:
        sent.append(message)

    await asyncio.wait_for(app(request, inbox.get, collect), timeout=5)
    body = b"".join(message.get("body", b"") for message in sent[1:])
    return Result(sent[0]["status"], list(sent[0].get("headers", [])), body)


PROXY = "10.0.0.1"


@pytest.mark.parametrize(
    ("options", "overrides", "htu", "status"),
    [
        ({}, {}, URL, 200),
        ({}, {"scheme": "https"}, "https://api.test/orders", 200),
        ({"public_url": "https://api.example.com"}, {}, "https://api.example.com/orders", 200),
        ({"public_url": "https://api.example.com/"}, {}, URL, 401),
        (
            {"trusted_proxies": [PROXY]},
            {
                "client": (PROXY, 1),
                "forwarded": [
                    (b"x-forwarded-proto", b"https"),
                    (b"x-forwarded-host", b"api.example.com"),
                ],
            },
            "https://api.example.com/orders",
            200,
        ),
        (
            {"trusted_proxies": [PROXY]},
            {
                "client": (PROXY, 1),
                "forwarded": [(b"x-forwarded-host", b"a.example.com, b.internal")],
            },
            "http://a.example.com/orders",
            200,
        ),
        (
            {"trusted_proxies": [PROXY]},
            {
                "client": (PROXY, 1),
                "forwarded": [
                    (
                        b"forwarded",
                        b'for=1.2.3.4;proto=https;host="api.example.com:8443", for=10.0.0.1',
                    )
                ],
            },
            "https://api.example.com:8443/orders",
            200,
        ),
        (
            {"trusted_proxies": [PROXY]},
            {"client": ("10.9.9.9", 1), "forwarded": [(b"x-forwarded-host", b"api.example.com")]},
            "http://api.example.com/orders",
            401,  # spoofed by a peer that is no trusted proxy: the Host header counts
        ),
        (
            {},
            {"forwarded": [(b"x-forwarded-host", b"api.example.com")]},
            "http://api.example.com/orders",
            401,  # no proxy trusted at all
        ),
        (
            {"trusted_proxies": [PROXY]},
            {"client": (PROXY, 1), "forwarded": [(b"x-forwarded-host", b"evil/x@y")]},
            URL,
            200,  # an unusable forwarded host is ignored: the Host header counts
        ),
        (
            {"trusted_proxies": ["::1"]},
            {"client": ("0:0:0:0:0:0:0:1", 1), "forwarded": [(b"x-forwarded-proto", b"https")]},
            "https://api.test/orders",
            200,
        ),
        ({"trusted_proxies": [PROXY]}, {"client": None}, URL, 200),
        ({"trusted_proxies": [PROXY]}, {"client": ("unix-socket", 0)}, URL, 200),
        ({}, {"root_path": "/api"}, "http://api.test/api/orders", 200),
        ({}, {"root_path": "/api", "path": "/api/orders"}, "http://api.test/api/orders", 200),
        ({}, {"path": "/a b", "raw_path": b"/a%20b"}, "http://api.test/a%20b", 200),
        ({}, {"path": "/a b", "raw_path": None}, "http://api.test/a%20b", 200),
        ({}, {"host": None}, "http://127.0.0.1:80/orders", 200),
        ({}, {"host": b"api.test\x00evil"}, URL, 401),
    ],
    ids=[
        "scope",
        "scope-https",
        "public-url",
        "public-url-wins",
        "x-forwarded",
        "x-forwarded-first",
        "forwarded",
        "spoofed-by-untrusted-peer",
        "no-proxy-trusted",
        "bad-forwarded-host",
        "ipv6-proxy",
        "no-client",
        "unix-client",
        "root-path",
        "root-path-in-path",
        "raw-path",
        "no-raw-path",
        "no-host",
        "bad-host",
    ],
)
async def test_htu_is_the_uri_the_client_saw(
    fake: FakeIssuer,
    key: DPoPKey,
    options: dict[str, Any],
    overrides: dict[str, Any],
    htu: str,
    status: int,
) -> None:
    app = protect(verifier_of(fake), **options)
    token = bound(fake, key)
    path = overrides.pop("path", "/orders")
    headers = [(b"host", b"api.test"), *dpop(token, key.proof("GET", htu, access_token=token))]
    headers += overrides.pop("forwarded", [])
    host = overrides.pop("host", b"api.test")
    headers = [pair for pair in headers if pair[0] != b"host"]
    if host is not None:
        headers.append((b"host", host))
    if "raw_path" not in overrides:
        overrides["raw_path"] = path.encode()
    result = await send(app, path=path, headers=headers, **overrides)
    assert result.status == status


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"public_url": 5}, TypeError),
        ({"public_url": "ftp://api.example.com"}, ValueError),
        ({"public_url": "https://"}, ValueError),
        ({"public_url": "https://api.example.com/base"}, ValueError),
        ({"public_url": "https://api.example.com?x=1"}, ValueError),
        ({"public_url": "https://me@api.example.com"}, ValueError),
        ({"public_url": "https://api.example.com:99999"}, ValueError),
        ({"trusted_proxies": "10.0.0.1"}, TypeError),
        ({"trusted_proxies": [10]}, TypeError),
        ({"trusted_proxies": ["proxy.local"]}, ValueError),
    ],
)
def test_bad_url_options_fail_at_construction(
    fake: FakeIssuer, options: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        BearerAuthMiddleware(Starlette(), verifier=verifier_of(fake), **options)


# -- WebSocket handshakes ------------------------------------------------------------------------


@pytest.mark.parametrize("htu", ["http://api.test/ws", "ws://api.test/ws"])
async def test_a_websocket_handshake_proves_a_get(fake: FakeIssuer, htu: str) -> None:
    key = ProofKey(now=time.time())
    app = protect(verifier_of(fake))
    token = fake.mint(claims={"cnf": {"jkt": key.jkt}})
    session = await websocket(app, headers=dpop(token, key.proof("GET", htu, token=token)))
    assert session.accepted
    refused = await websocket(app, headers=dpop(token, key.proof("POST", htu, token=token)))
    assert refused.denial is not None
    assert refused.denial.status == 401


async def test_a_nonce_is_not_added_to_a_websocket_reply(fake: FakeIssuer, key: DPoPKey) -> None:
    now = [1_800_000_000.0]
    nonces = NonceSource(b"k" * 16, window=60, clock=lambda: now[0])
    app = protect(verifier_of(fake, DPoPPolicy(nonces=nonces)))
    token = bound(fake, key)
    nonce = nonces.current()
    now[0] += 60
    proof = key.proof("GET", "http://api.test/ws", access_token=token, nonce=nonce)
    session = await websocket(app, headers=dpop(token, proof))
    assert session.accepted


async def test_a_refused_token_never_reaches_the_proof_check(
    fake: FakeIssuer, key: DPoPKey
) -> None:
    store = MemoryReplayStore()
    app = protect(verifier_of(fake, DPoPPolicy(replay_store=store)))
    token = bound(fake, key, audience="someone-else")
    result = await call(app, headers=dpop(token, key.proof("GET", URL, access_token=token)))
    assert_refusal(result, 401, "invalid_token")
    assert len(store) == 0


async def test_a_flood_of_bad_proofs_costs_no_store_entry_and_no_key_fetch(
    fake: FakeIssuer, key: DPoPKey
) -> None:
    store = MemoryReplayStore(10)
    app = protect(verifier_of(fake, DPoPPolicy(replay_store=store)))
    token = bound(fake, key)
    other = ProofKey("ES256", now=time.time())
    private = serialization.load_pem_private_key(key.private_pem(), None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    signed = ProofKey("ES256", key=private, now=time.time())  # the client's own key
    floods = [
        lambda: other.proof("GET", URL, token=token),  # another key
        lambda: signed.proof("GET", URL, token=token, signature=b"x" * 64),  # bad signature
        lambda: signed.proof("POST", URL, token=token),  # another method
        lambda: signed.proof("GET", "http://api.test/other", token=token),  # another URI
        lambda: signed.proof("GET", URL, token=token, claims={"iat": 1}),  # too old
    ]
    for index in range(50):  # bounded: 50 refused proofs
        result = await call(app, headers=dpop(token, floods[index % len(floods)]()))
        assert_refusal(result, 401, "invalid_dpop_proof")
    assert len(store) == 0
    assert fake.jwks_fetches == 1  # the token's one verification; proofs fetch nothing
    good = await call(app, headers=dpop(token, key.proof("GET", URL, access_token=token)))
    assert good.status == 200
    assert len(store) == 1


# -- hostile DPoP headers never raise ------------------------------------------------------------

_FAKE = FakeIssuer(audience=ORDERS_AUDIENCE, algorithm="ES256")
_KEY = DPoPKey.generate()
_BOUND = _FAKE.mint(claims={"cnf": {"jkt": _KEY.thumbprint}}, expires_in=86400 * 365)
PROOF_BYTES = st.binary(max_size=120) | st.sampled_from(
    [b"a.b.c", b"e30.e30.e30", b"\xff.\xfe.\xfd", b"x" * 9000, b"..", b"a.b.c.d"]
)


@settings(max_examples=100, deadline=None)
@given(
    proofs=st.lists(PROOF_BYTES, max_size=3),
    scheme=st.sampled_from([b"DPoP", b"dpop", b"Bearer"]),
)
def test_any_dpop_header_bytes_get_a_clean_reply(proofs: list[bytes], scheme: bytes) -> None:
    async def scenario() -> Result:
        app = protect(verifier_of(_FAKE))
        headers = [(b"authorization", scheme + b" " + _BOUND.encode())]
        headers += [(b"dpop", proof) for proof in proofs]
        return await call(app, headers=headers)

    result = asyncio.run(scenario())
    assert result.status == 401
    assert_refusal(result, 401, result.json()["error"])
