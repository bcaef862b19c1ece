"""The app under attack, and what a caller sees of it.

Every security test talks to a protected app through :class:`Guarded` and checks the reply
with :func:`assert_refused`: the status, the RFC 6750 challenge, the JSON body, that the
handler never ran, that nothing of the request came back, and how many JWKS requests the
identity provider received. ``Guarded`` speaks HTTP through ``httpx.ASGITransport`` (no
sockets); ``Guarded.over_http(url)`` sends the same requests to a real server on 127.0.0.1
serving the same app: switching is that one call.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac as hmac_module
import json
import re
import ssl
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from resource_guard import TokenVerifier
from resource_guard.middleware import BearerAuthMiddleware, get_access_token
from resource_guard.starlette import require_scopes
from resource_guard.testing import FakeIssuer, SigningKey
from tests.asgi_client import call

AUDIENCE = "api://orders"
REALM = "api"
REQUEST_TIMEOUT = 10.0
REPLY_HEADERS = frozenset(
    {"content-type", "content-length", "cache-control", "www-authenticate", "retry-after"}
    | {"date", "server"}  # added by a real HTTP server such as uvicorn
)
# RFC 6750 §3: auth-param values we send are quoted strings of these characters only.
DPOP_CHALLENGE = 'DPoP realm="api", algs="'
CHALLENGE = re.compile(
    r'(?:Bearer realm="api"|DPoP realm="api", algs="[A-Za-z0-9 ]+")'
    r'(?:, (?:error|error_description|scope)="[\x20\x21\x23-\x5b\x5d-\x7e]*")*'
)
_HASHES: dict[str, hashes.HashAlgorithm] = {
    "256": hashes.SHA256(),
    "384": hashes.SHA384(),
    "512": hashes.SHA512(),
}


# -- building tokens --------------------------------------------------------------------


def b64url(data: bytes) -> str:
    """Canonical, unpadded base64url."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def json_bytes(value: Any) -> bytes:
    """Compact JSON of ``value``; bytes pass through (hand-written JSON, duplicates...)."""
    if isinstance(value, bytes):
        return value
    return json.dumps(value, separators=(",", ":")).encode()


def sign_bytes(key: SigningKey, alg: str, data: bytes) -> bytes:
    """A JWS signature of ``data`` with ``key`` for ``alg`` (RS*, PS*, ES*, EdDSA)."""
    private = key.private_key
    if isinstance(private, rsa.RSAPrivateKey):
        digest = _HASHES[alg[2:]]
        pad: padding.AsymmetricPadding = (
            padding.PSS(padding.MGF1(digest), digest.digest_size)
            if alg.startswith("PS")
            else padding.PKCS1v15()
        )
        return private.sign(data, pad, digest)
    if isinstance(private, ec.EllipticCurvePrivateKey):
        size = (private.curve.key_size + 7) // 8
        r, s = decode_dss_signature(private.sign(data, ec.ECDSA(_HASHES[alg[2:]])))
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    assert isinstance(private, ed25519.Ed25519PrivateKey)
    return private.sign(data)


def signed(header_segment: str, payload_segment: str, key: SigningKey, alg: str) -> str:
    """Sign the exact segment text given (canonical or not): only the signature is honest."""
    signing_input = f"{header_segment}.{payload_segment}"
    return f"{signing_input}.{b64url(sign_bytes(key, alg, signing_input.encode()))}"


# -- the app ----------------------------------------------------------------------------


@dataclass
class Calls:
    """How often the protected handlers ran."""

    count: int = 0


def protected_app(verifier: TokenVerifier, calls: Calls) -> ASGIApp:
    """A Starlette app behind BearerAuthMiddleware: ``/health`` and ``/public/*`` are
    public, ``/admin`` needs the ``orders:admin`` scope, every other path a valid token."""

    async def health(request: Request) -> Response:
        return PlainTextResponse("ok")

    @require_scopes("orders:admin")
    async def admin(request: Request) -> Response:
        calls.count += 1
        return JSONResponse({"admin": True})

    async def handler(request: Request) -> Response:
        calls.count += 1
        token = get_access_token(request)
        return JSONResponse({"subject": token.subject if token else None})

    app = Starlette(
        routes=[
            Route("/health", health),
            Route("/public/{rest:path}", health),
            Route("/admin", admin, methods=["GET", "POST"]),
            Route("/{path:path}", handler, methods=["GET", "POST"]),
        ]
    )
    return BearerAuthMiddleware(
        app, verifier=verifier, public_paths=("/health", "/public/*"), realm=REALM
    )


@dataclass(frozen=True)
class Req:
    """One request: the bearer token, or a raw ``Authorization`` value, and the rest."""

    token: str | None = None
    authorization: bytes | None = None
    headers: Sequence[tuple[bytes, bytes]] = ()
    path: str = "/orders"
    query: str = ""
    method: str = "GET"
    body: bytes = b""

    def header_list(self) -> list[tuple[bytes, bytes]]:
        headers = list(self.headers)
        if self.authorization is not None:
            headers.append((b"authorization", self.authorization))
        elif self.token is not None:
            headers.append((b"authorization", b"Bearer " + self.token.encode("latin-1")))
        return headers


@dataclass(frozen=True)
class Seen:
    """What a caller saw, plus what happened behind the scenes for that one request."""

    status: int
    headers: httpx.Headers
    body: bytes
    handler_calls: int
    jwks_fetches: int
    seconds: float

    @property
    def challenge(self) -> str | None:
        """The challenge holding the error, else the first (``Bearer``): besides it, only
        a ``DPoP`` challenge may come (RFC 9449 §7.1, while DPoP is allowed)."""
        values = self.headers.get_list("www-authenticate")
        assert len(values) <= 2, "more than two challenges"
        if len(values) == 2:
            assert values[1].startswith(DPOP_CHALLENGE), values
            return values[1] if "error=" in values[1] else values[0]
        return values[0] if values else None

    def json(self) -> Any:
        return json.loads(self.body)


class Guarded:
    """The protected app and an HTTP client for it; counts handler runs and JWKS fetches.

    Requests go through ``httpx.ASGITransport``; after :meth:`over_http` they go over
    real HTTP to a server (e.g. uvicorn on 127.0.0.1) serving :attr:`app`.
    """

    def __init__(self, verifier: TokenVerifier, issuer: FakeIssuer | None = None) -> None:
        self.verifier = verifier
        self.issuer = issuer
        self.calls = Calls()
        self.app = protected_app(verifier, self.calls)
        self.base_url: str | None = None
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://api.test"
        )

    def over_http(self, base_url: str, tls: ssl.SSLContext) -> Guarded:
        """A twin of this app whose requests go over HTTP to ``base_url`` (same counters)."""
        twin = Guarded.__new__(Guarded)
        twin.verifier, twin.issuer, twin.calls, twin.app = (
            self.verifier,
            self.issuer,
            self.calls,
            self.app,
        )
        twin.base_url = base_url
        twin.client = httpx.AsyncClient(base_url=base_url, trust_env=False, verify=tls, timeout=10)
        return twin

    def jwks_count(self) -> int:
        return self.issuer.counts["jwks"] if self.issuer is not None else 0

    async def send(self, req: Req | str) -> Seen:
        """Send one request and observe it (a str is a bearer token on GET /orders)."""
        if isinstance(req, str):
            req = Req(token=req)
        calls, fetches = self.calls.count, self.jwks_count()
        request = self.client.build_request(
            req.method,
            req.path + (f"?{req.query}" if req.query else ""),
            headers=req.header_list(),
            content=req.body or None,
        )
        started = time.perf_counter()
        if request.url.path == req.path or self.base_url is not None:
            response = await asyncio.wait_for(self.client.send(request), REQUEST_TIMEOUT)
            status, headers, body = response.status_code, response.headers, response.content
        else:  # httpx would normalise this path: send it as it is, straight to the app
            status, raw_headers, body = await asgi_call(
                self.app,
                req.header_list(),
                path=req.path,
                method=req.method,
                query=req.query,
                body=req.body,
            )
            headers = httpx.Headers(raw_headers)
        return Seen(
            status=status,
            headers=headers,
            body=body,
            handler_calls=self.calls.count - calls,
            jwks_fetches=self.jwks_count() - fetches,
            seconds=time.perf_counter() - started,
        )

    async def aclose(self) -> None:
        await self.client.aclose()


# -- what a refusal must look like --------------------------------------------------------


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):  # member names ("exp", "crit") may be named in replies
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _lenient_json(segment: str) -> object:
    try:
        return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, RecursionError):
        return None


def request_secrets(req: Req | str) -> set[str]:
    """Strings of the request that must never come back: the token, its segments and
    every string in its header and payload (4+ characters), the raw credentials."""
    if isinstance(req, str):
        req = Req(token=req)
    found: set[str] = set()
    raw = req.token
    if raw is None and req.authorization is not None:
        raw = req.authorization.decode("latin-1").partition(" ")[2].strip()
    if raw:
        found.add(raw)
        segments = raw.split(".")
        found.update(segment for segment in segments if len(segment) >= 8)
        for segment in segments[:2]:
            found.update(s for s in _strings(_lenient_json(segment)) if len(s.strip()) >= 4)
    for _, value in req.header_list():
        if len(value) >= 8:
            found.add(value.decode("latin-1"))
    return found


# Fixed words of every reply; a request value may happen to be part of one ("id_token").
_VOCABULARY = ("invalid_token", "invalid_request", "insufficient_scope", "temporarily_unavailable")
_ALGS = re.compile(r'algs="[A-Za-z0-9 ]*"')


def assert_not_echoed(seen: Seen, secrets: set[str]) -> None:
    """No secret appears in the reply body or in any reply header value."""
    texts = [seen.body.decode("latin-1")] + [value for _, value in seen.headers.multi_items()]
    for word in _VOCABULARY:
        texts = [text.replace(word, "\x00") for text in texts]
    # A DPoP challenge lists the accepted algorithms ("RS256" may be a header value too).
    texts = [_ALGS.sub("", text) for text in texts]
    for secret in secrets:
        for text in texts:
            assert secret not in text, f"the reply echoes {secret[:60]!r}"


def assert_refused(
    seen: Seen,
    status: int,
    error: str | None,
    *,
    fetches: int | None = 0,
    secrets: set[str] = frozenset(),  # type: ignore[assignment]
) -> None:
    """A refusal exactly as RFC 6750 and DESIGN.md describe it, and nothing more.

    ``error`` None means "no credentials": a bare challenge without an error code.
    ``fetches`` None skips the JWKS count.
    """
    assert seen.status == status, (seen.status, seen.body[:200])
    assert seen.handler_calls == 0, "the protected handler ran"
    assert set(seen.headers) <= REPLY_HEADERS, set(seen.headers) - REPLY_HEADERS
    assert seen.headers.get("content-type") == "application/json"
    assert seen.headers.get("cache-control") == "no-store"
    body = seen.json()
    assert set(body) == {"error", "error_description"}
    assert isinstance(body["error_description"], str)
    challenge = seen.challenge
    if status == 503:
        assert body["error"] == "temporarily_unavailable"
        assert challenge is None
        retry_after = seen.headers.get("retry-after")
        assert retry_after is not None
        assert retry_after.isdigit()
        assert 1 <= int(retry_after) <= 3600
    elif error is None:
        assert body["error"] == "unauthorized"
        assert challenge == f'Bearer realm="{REALM}"'
    else:
        assert body["error"] == error
        assert challenge is not None
        assert CHALLENGE.fullmatch(challenge), challenge
        scheme = f'(?:Bearer realm="{REALM}"|DPoP realm="{REALM}", algs="[A-Za-z0-9 ]+")'
        assert re.match(f'{scheme}, error="{error}"', challenge), challenge
        assert f'error_description="{body["error_description"]}"' in challenge
    if fetches is not None:
        assert seen.jwks_fetches == fetches, f"{seen.jwks_fetches} JWKS fetches"
    assert_not_echoed(seen, set(secrets))


def assert_served(seen: Seen) -> None:
    """The request reached the handler exactly once and got its reply."""
    assert seen.status == 200, (seen.status, seen.body[:200])
    assert seen.handler_calls == 1


# -- raw ASGI: exact paths, and floods ---------------------------------------------------


async def asgi_call(
    app: ASGIApp,
    headers: Sequence[tuple[bytes, bytes]],
    *,
    path: str = "/orders",
    method: str = "GET",
    query: str = "",
    body: bytes = b"",
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """One request straight into the ASGI app (tests/asgi_client.py), the path exactly as
    given (no client normalises ``..`` or ``//`` away): the reply's status, headers, body."""
    result = await call(
        app,
        path=path,
        headers=headers,
        query=query.encode(),
        method=method,
        body=body,
        timeout=REQUEST_TIMEOUT,
    )
    return result.status, result.headers, result.body


# -- a real server on loopback ----------------------------------------------------------


# -- the attacker's kit ------------------------------------------------------------------

DROP: Any = object()
"""A claim or header value that means "leave this member out"."""


@dataclass
class Keys:
    """Published keys of the legitimate issuer and unpublished ones of the attacker."""

    rsa: SigningKey  # RS256, the issuer's current key
    rsa2: SigningKey  # a second published RS256 key: a token without kid is ambiguous
    ec: SigningKey  # ES256
    ed: SigningKey  # EdDSA (Ed25519)
    rogue_rsa: SigningKey
    rogue_ec: SigningKey
    rogue_ed: SigningKey
    oct_secret: bytes  # published as a symmetric ("oct") JWK, which must never be used


class Kit:
    """Builds tokens for one legitimate issuer: validly signed unless a test says otherwise,
    so that each attack differs from a good token in exactly the way it names."""

    def __init__(self, issuer: FakeIssuer, keys: Keys, clock: Any, attacker: FakeIssuer) -> None:
        self.fake = issuer
        self.keys = keys
        self.clock = clock
        self.attacker = attacker

    @property
    def iss(self) -> str:
        return self.fake.issuer

    def claims(self, **changes: Any) -> dict[str, Any]:
        now = int(self.clock())
        claims: dict[str, Any] = {
            "iss": self.iss,
            "sub": "user-42",
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + 300,
            "jti": f"jti-{now}",
            "client_id": "orders-web",
            "scope": "orders:read",
        }
        claims.update(changes)
        return {name: value for name, value in claims.items() if value is not DROP}

    def header(self, key: SigningKey | None = None, **changes: Any) -> dict[str, Any]:
        key = key or self.keys.rsa
        header: dict[str, Any] = {"alg": key.alg, "kid": key.kid, "typ": "at+jwt"}
        header.update(changes)
        return {name: value for name, value in header.items() if value is not DROP}

    def token(
        self,
        header: dict[str, Any] | bytes | None = None,
        payload: dict[str, Any] | bytes | None = None,
        *,
        key: SigningKey | None = None,
        alg: str | None = None,
    ) -> str:
        """A token signed with ``key`` (default: the issuer's RSA key) over exactly the
        header and payload given (dicts become compact JSON, bytes are used as they are)."""
        key = key or self.keys.rsa
        header = self.header(key) if header is None else header
        payload = self.claims() if payload is None else payload
        if alg is None:
            alg = key.alg
        return signed(b64url(json_bytes(header)), b64url(json_bytes(payload)), key, alg)

    def unsigned(
        self,
        header: dict[str, Any] | bytes,
        payload: dict[str, Any] | bytes | None = None,
        signature: bytes = b"",
    ) -> str:
        """A token with the given raw signature bytes (none by default)."""
        payload = self.claims() if payload is None else payload
        return f"{b64url(json_bytes(header))}.{b64url(json_bytes(payload))}.{b64url(signature)}"

    def resigned(self, token: str, signature: bytes) -> str:
        """``token`` with its signature replaced."""
        return token.rsplit(".", 1)[0] + "." + b64url(signature)

    def signature(self, token: str) -> bytes:
        segment = token.rsplit(".", 1)[1]
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))

    def hmac(
        self,
        secret: bytes,
        alg: str = "HS256",
        header: dict[str, Any] | None = None,
        payload: dict[str, Any] | None = None,
    ) -> str:
        """An HMAC-signed token (``alg`` HS256/384/512), as an algorithm-confusion attacker
        would make it with ``secret``."""
        header = self.header(alg=alg) if header is None else header
        payload = self.claims() if payload is None else payload
        signing_input = f"{b64url(json_bytes(header))}.{b64url(json_bytes(payload))}"
        digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
        mac = hmac_module.new(secret, signing_input.encode(), digest).digest()
        return f"{signing_input}.{b64url(mac)}"
