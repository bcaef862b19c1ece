"""Property-based fuzzing (hypothesis) of everything a client or an identity provider sends.

Whatever arrives (``Authorization`` bytes, token strings, validly signed tokens with odd
JSON, JWKS documents, JWKS HTTP replies), the app answers 400/401/403/503 the RFC 6750 way,
or serves the request only when every rule holds; it never raises, never answers another
5xx and never hangs (each request is bounded by a timeout). ``make fuzz`` runs the same
tests with the ``campaign`` profile (many more examples; see conftest.py).
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import json
import math
import zlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeGuard, TypeVar

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import event, given
from hypothesis import strategies as st

from resource_guard import InvalidTokenError, TokenVerifier
from resource_guard._keyset import KeySet, UnusableKeyError, load_key
from resource_guard.testing import FakeIssuer, SigningKey, generate_key

from ._harness import (
    AUDIENCE,
    Guarded,
    Req,
    Seen,
    assert_refused,
    b64url,
    json_bytes,
    request_secrets,
    signed,
)

T = TypeVar("T")
NOW = 1_800_000_000
ISSUER = "https://issuer.example.test"
LEEWAY = 30
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
ALLOWED_ALGS = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}
ALLOWED_ALGS |= {"EdDSA", "Ed25519"}


class Loop:
    """One event loop for all the examples of a test (hypothesis calls a sync function)."""

    def __init__(self) -> None:
        self._runner = asyncio.Runner()

    def run(self, awaitable: Awaitable[T]) -> T:
        async def bounded() -> T:
            return await asyncio.wait_for(awaitable, 10)

        return self._runner.run(bounded())

    def close(self) -> None:
        self._runner.close()


@pytest.fixture
def loop() -> Iterator[Loop]:
    runner = Loop()
    yield runner
    runner.close()


@pytest.fixture(scope="module")
def ed_key() -> SigningKey:
    return generate_key("EdDSA", "fuzz-key")


@pytest.fixture
def app(loop: Loop, ed_key: SigningKey) -> Iterator[Guarded]:
    """The protected app with keys already fetched from an in-process fake issuer."""
    fake = FakeIssuer(ISSUER, audience=AUDIENCE, algorithm="EdDSA")
    fake.add_key(ed_key, make_current=True)
    client = fake.async_client()
    verifier = TokenVerifier(ISSUER, AUDIENCE, http_client=client, clock=lambda: float(NOW))
    guarded = Guarded(verifier, fake)
    loop.run(verifier.start())
    yield guarded
    loop.run(guarded.aclose())
    loop.run(verifier.aclose())
    loop.run(client.aclose())


def check_refusal(seen: Seen, req: Req | str, *, statuses: tuple[int, ...] = (400, 401)) -> None:
    """A clean refusal of one of ``statuses``, whatever the request was.

    Hypothesis builds inputs from the string constants of the code under test, so a short
    input may well be a piece of a fixed reply ("application/", "error_descri"): only
    values of 24 characters or more count as echoed.
    """
    assert seen.status in statuses, (seen.status, seen.body[:200])
    error = json.loads(seen.body)["error"]
    assert_refused(
        seen,
        seen.status,
        None if error == "unauthorized" else error,
        fetches=None,
        secrets={s for s in request_secrets(req) if len(s) >= 24},
    )


# -- what a client sends ----------------------------------------------------------------

B64ISH = st.text(alphabet=B64URL + ".=+/~", max_size=120)
TOKENISH = st.lists(st.text(alphabet=B64URL, max_size=60), min_size=1, max_size=6).map(".".join)
SCHEMES = st.sampled_from(
    [b"Bearer ", b"bearer ", b"BEARER  ", b"Bearer", b"Basic ", b"DPoP ", b""]
)
HEADER_VALUES = (
    st.binary(max_size=200)
    | st.builds(lambda scheme, rest: scheme + rest, SCHEMES, st.binary(max_size=200))
    | st.builds(lambda scheme, rest: scheme + rest.encode(), SCHEMES, B64ISH | TOKENISH)
)


def test_fuzz_authorization_header_bytes(loop: Loop, app: Guarded) -> None:
    """Any Authorization bytes (any number of headers, any query): 400 or 401, never served."""

    @given(
        values=st.lists(HEADER_VALUES, max_size=3),
        query=st.sampled_from(["", "access_token=x", "a=b&access_token=", "%61ccess_token=1"])
        | st.text(alphabet="abc_=&%01", max_size=30),
    )
    def check(values: list[bytes], query: str) -> None:
        req = Req(headers=[(b"authorization", value) for value in values], query=query)
        check_refusal(loop.run(app.send(req)), req)

    check()


def test_fuzz_token_strings(loop: Loop, app: Guarded) -> None:
    """Any string handed to verify() raises InvalidTokenError; over HTTP it is refused."""

    @given(token=st.text(max_size=300) | B64ISH | TOKENISH)
    def check(token: str) -> None:
        with pytest.raises(InvalidTokenError):
            loop.run(app.verifier.verify(token))
        if token.isascii() and token.isprintable():
            req = Req(authorization=b"Bearer " + token.encode())
            check_refusal(loop.run(app.send(req)), req)

    check()


# -- validly signed tokens with arbitrary JSON ------------------------------------------

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)  # the suite covers NaN/Infinity
    | st.text(max_size=20)
)
JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
TIMES = st.sampled_from([NOW - 3600, NOW - 31, NOW - 29, NOW, NOW + 29, NOW + 31, NOW + 300])
STRINGS = st.sampled_from(["", "u", ISSUER, AUDIENCE, ISSUER + "/", "api://other"])


def _header_strategy(kid: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {},
        optional={
            "alg": st.sampled_from(["EdDSA", "Ed25519", "ES256", "none", "HS256", "RS256"]) | JSON,
            "kid": st.just(kid) | st.sampled_from(["", "other"]) | JSON,
            "typ": st.sampled_from(["at+jwt", "JWT", "application/at+jwt", "dpop+jwt", ""]) | JSON,
            "crit": JSON,
            "zip": st.just("DEF") | JSON,
            "b64": st.booleans(),
            "jku": st.just("http://127.0.0.1:9/jwks") | JSON,
            "x": JSON,
        },
    )


PAYLOADS = st.fixed_dictionaries(
    {},
    optional={
        "iss": st.just(ISSUER) | STRINGS | JSON,
        "aud": st.just(AUDIENCE) | st.lists(STRINGS, max_size=3) | STRINGS | JSON,
        "exp": TIMES | JSON,
        "nbf": TIMES | JSON,
        "iat": TIMES | JSON,
        "sub": STRINGS | JSON,
        "client_id": STRINGS | JSON,
        "scope": st.just("orders:read") | st.lists(STRINGS, max_size=2) | JSON,
        "scp": st.lists(STRINGS, max_size=2) | JSON,
        "jti": STRINGS | JSON,
    },
)


LAST_NUMERIC_DATE = 253402300799  # 9999-12-31T23:59:59Z


def _date(payload: dict[str, Any], claim: str) -> float | bool | None:
    """The NumericDate, None when absent, False when present but not a valid one."""
    if claim not in payload:
        return None
    value = payload[claim]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if not math.isfinite(value) or not 0 <= value <= LAST_NUMERIC_DATE:
        return False
    return float(value)


def _strings(value: object) -> TypeGuard[list[str]]:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def rules_hold(header: dict[str, Any], payload: Any, kid: str, now: float) -> bool:
    """The oracle: whether a token with this header and payload, signed by the one
    published EdDSA key (whose JWK says ``alg: EdDSA``), must be served at ``now``."""
    if header.get("alg") != "EdDSA" or {"crit", "zip", "b64", "enc"} & set(header):
        return False
    if any(name in header and not isinstance(header[name], str) for name in ("kid", "typ", "jku")):
        return False
    if header.get("kid", kid) != kid:
        return False
    typ = header.get("typ")
    if typ is not None and typ.lower().removeprefix("application/") not in {"at+jwt", "jwt"}:
        return False
    if not isinstance(payload, dict):
        return False
    exp, nbf, iat = (_date(payload, claim) for claim in ("exp", "nbf", "iat"))
    if exp is None or exp is False or nbf is False or iat is False:
        return False
    if any(name in payload and not isinstance(payload[name], str) for name in STRING_CLAIMS):
        return False
    if now > exp + LEEWAY or any(t is not None and now + LEEWAY < t for t in (nbf, iat)):
        return False
    if payload.get("iss") != ISSUER:
        return False
    aud = payload.get("aud")
    if not (aud == AUDIENCE or (_strings(aud) and AUDIENCE in aud)):
        return False
    scopes = (payload.get(claim) for claim in ("scope", "scp"))
    return all(value is None or isinstance(value, str) or _strings(value) for value in scopes)


STRING_CLAIMS = ("sub", "jti", "client_id", "azp", "cid")


def test_fuzz_validly_signed_tokens_with_arbitrary_json(
    loop: Loop, app: Guarded, ed_key: SigningKey
) -> None:
    """A token signed by the real key is served if and only if every rule holds."""

    @given(header=_header_strategy(ed_key.kid), payload=PAYLOADS | JSON)
    def check(header: dict[str, Any], payload: Any) -> None:
        token = signed(b64url(json_bytes(header)), b64url(json_bytes(payload)), ed_key, "EdDSA")
        seen = loop.run(app.send(token))
        event("served" if seen.status == 200 else "refused")
        assert (seen.status == 200) == rules_hold(header, payload, ed_key.kid, NOW)
        if seen.status == 200:
            assert seen.handler_calls == 1
        else:
            check_refusal(seen, token, statuses=(401,))

    check()


def test_the_token_oracle_agrees_on_known_cases(ed_key: SigningKey) -> None:
    """The oracle itself: a good token passes it, and each broken rule fails it."""
    good_header = {"alg": "EdDSA", "kid": ed_key.kid, "typ": "at+jwt"}
    good = {"iss": ISSUER, "aud": AUDIENCE, "exp": NOW + 300, "sub": "u"}
    assert rules_hold(good_header, good, ed_key.kid, NOW)
    assert rules_hold({"alg": "EdDSA"}, {**good, "aud": ["x", AUDIENCE]}, ed_key.kid, NOW)
    broken: list[tuple[dict[str, Any], Any]] = [
        ({**good_header, "alg": "Ed25519"}, good),
        ({**good_header, "typ": "dpop+jwt"}, good),
        ({**good_header, "kid": "other"}, good),
        ({**good_header, "crit": []}, good),
        (good_header, {**good, "exp": NOW - 31}),
        (good_header, {**good, "nbf": NOW + 31}),
        (good_header, {**good, "exp": True}),
        (good_header, {**good, "aud": "api://other"}),
        (good_header, {**good, "iss": ISSUER + "/"}),
        (good_header, {**good, "sub": 1}),
        (good_header, {**good, "scope": 1}),
        (good_header, []),
    ]
    for header, payload in broken:
        assert not rules_hold(header, payload, ed_key.kid, NOW)


# -- what an identity provider sends ----------------------------------------------------


def _jwk_strategy(real: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    def member(name: str) -> st.SearchStrategy[Any]:
        fixed = [real[name]] if name in real else []
        return st.sampled_from([*fixed, "", "AAAA", "_w"]) | JSON

    return st.fixed_dictionaries(
        {},
        optional={
            "kty": st.sampled_from(["OKP", "EC", "RSA", "oct", "XYZ"]) | JSON,
            "crv": st.sampled_from(["Ed25519", "Ed448", "X25519", "P-256"]) | JSON,
            "kid": st.sampled_from([real["kid"], "other"]) | JSON,
            "use": st.sampled_from(["sig", "enc"]) | JSON,
            "key_ops": st.sampled_from([["verify"], ["sign"], ["encrypt"], []]) | JSON,
            "alg": st.sampled_from(["EdDSA", "Ed25519", "ES256", "RSA-OAEP", "HS256"]) | JSON,
            "x": member("x"),
            "y": member("y"),
            "n": member("n"),
            "e": member("e"),
            "d": member("d"),
            "k": member("k"),
        },
    )


def _served_key_fits(document: Any, key: SigningKey) -> bool:
    """The oracle: whether our key rules pick, for this key's token, a key that is it."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        return False
    raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
    for jwk in document["keys"]:
        try:
            loaded = load_key(jwk)
        except UnusableKeyError:
            continue
        if loaded.kid == key.kid and loaded.fits("EdDSA"):  # the first fitting key is used
            public = key.private_key.public_key().public_bytes(*raw)
            return isinstance(loaded.key, ed25519.Ed25519PublicKey) and (
                loaded.key.public_bytes(*raw) == public
            )
    return False


def _jwks_app(
    loop: Loop, handler: Callable[[httpx.Request], httpx.Response]
) -> tuple[Guarded, httpx.AsyncClient]:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    verifier = TokenVerifier(ISSUER, AUDIENCE, jwks_uri=ISSUER + "/jwks", http_client=client)
    return Guarded(verifier), client


def _close(loop: Loop, app: Guarded, client: httpx.AsyncClient) -> None:
    loop.run(app.aclose())
    loop.run(app.verifier.aclose())
    loop.run(client.aclose())


def test_fuzz_jwks_documents(loop: Loop, ed_key: SigningKey) -> None:
    """Any JWKS document: the good token is served only if a JWK fit for it is published;
    otherwise 401 (no fitting key) or 503 (no usable key at all), never anything else."""
    token = signed(
        b64url(json_bytes({"alg": "EdDSA", "kid": ed_key.kid, "typ": "at+jwt"})),
        b64url(json_bytes({"iss": ISSUER, "aud": AUDIENCE, "exp": 4_000_000_000, "sub": "u"})),
        ed_key,
        "EdDSA",
    )
    real = ed_key.public_jwk()
    documents = (
        st.fixed_dictionaries(
            {"keys": st.lists(_jwk_strategy(real) | st.just(real) | JSON, max_size=4)}
        )
        | JSON
    )

    @given(document=documents)
    def check(document: Any) -> None:
        body = json.dumps(document).encode()  # NaN and Infinity as Python writes them
        app, client = _jwks_app(loop, lambda request: httpx.Response(200, content=body))
        try:
            seen = loop.run(app.send(token))
        finally:
            _close(loop, app, client)
        event("served" if seen.status == 200 else "refused")
        assert (seen.status == 200) == _served_key_fits(document, ed_key)
        if seen.status != 200:
            check_refusal(seen, token, statuses=(401, 503))
            if seen.status == 503:
                try:
                    usable = len(KeySet.from_jwks(document)) > 0
                except ValueError:
                    usable = False
                assert not usable

    check()


ENCODINGS = st.sampled_from(["", "gzip", "deflate", "br", "identity", "x-junk", "gzip, gzip"])


def _reply_body(kind: str, payload: Any, raw: bytes) -> bytes:
    text = json_bytes(payload) if not isinstance(payload, bytes) else payload
    if kind == "gzip":
        return gzip.compress(text)
    if kind == "deflate":
        return zlib.compress(text)
    if kind == "raw":
        return raw
    return text


def test_fuzz_jwks_http_replies(loop: Loop, ed_key: SigningKey) -> None:
    """Any status, headers and body from the JWKS endpoint: served only from a proper
    200 reply holding the key; otherwise a 503 with Retry-After. Never an exception."""
    token = signed(
        b64url(json_bytes({"alg": "EdDSA", "kid": ed_key.kid})),
        b64url(json_bytes({"iss": ISSUER, "aud": AUDIENCE, "exp": 4_000_000_000})),
        ed_key,
        "EdDSA",
    )
    good = {"keys": [ed_key.public_jwk()]}

    @given(
        status=st.sampled_from([200, 200, 200, 204, 301, 302, 304, 404, 429, 500, 503])
        | st.integers(min_value=200, max_value=599),
        encoding=ENCODINGS,
        body_kind=st.sampled_from(["json", "gzip", "deflate", "raw"]),
        payload=st.just(good) | JSON,
        raw=st.binary(max_size=300),
        cache_control=st.sampled_from(["", "max-age=60", "no-store", "max-age=-1", "max-age=1e9"])
        | st.text(max_size=20),
    )
    def check(
        status: int, encoding: str, body_kind: str, payload: Any, raw: bytes, cache_control: str
    ) -> None:
        body = _reply_body(body_kind, payload, raw)
        headers = {"content-encoding": encoding} if encoding else {}
        if cache_control.isascii() and cache_control.isprintable():
            headers["cache-control"] = cache_control

        def reply(request: httpx.Request) -> httpx.Response:
            return httpx.Response(status, headers=headers, content=body)

        app, client = _jwks_app(loop, reply)
        try:
            seen = loop.run(app.send(token))
        finally:
            _close(loop, app, client)
        if seen.status == 200:
            assert status == 200
            assert payload == good
        else:
            check_refusal(seen, token, statuses=(503,))

    check()


def test_fuzz_keyset_accepts_any_json_without_crashing() -> None:
    """The pure key rules raise only their own errors, whatever the document."""

    @given(document=JSON | st.fixed_dictionaries({"keys": st.lists(JSON, max_size=5)}))
    def check(document: Any) -> None:
        if isinstance(document, dict) and isinstance(document.get("keys"), list):
            KeySet.from_jwks(document)
        else:
            with pytest.raises(ValueError, match="'keys' list"):
                KeySet.from_jwks(document)
        if isinstance(document, dict):
            with pytest.raises(UnusableKeyError):
                load_key(document)

    check()


def _same_reply(reply: httpx.Response, request: httpx.Request) -> httpx.Response:
    return reply


def test_a_proper_jwks_reply_is_served(loop: Loop, ed_key: SigningKey) -> None:
    """The control for the reply fuzzing above: its good case really is served."""
    token = signed(
        b64url(json_bytes({"alg": "EdDSA", "kid": ed_key.kid})),
        b64url(json_bytes({"iss": ISSUER, "aud": AUDIENCE, "exp": 4_000_000_000})),
        ed_key,
        "EdDSA",
    )
    for encoding, kind in (("", "json"), ("gzip", "gzip"), ("deflate", "deflate")):
        reply = httpx.Response(
            200,
            headers={"content-encoding": encoding} if encoding else {},
            content=_reply_body(kind, {"keys": [ed_key.public_jwk()]}, b""),
        )
        app, client = _jwks_app(loop, functools.partial(_same_reply, reply))
        try:
            seen = loop.run(app.send(token))
        finally:
            _close(loop, app, client)
        assert seen.status == 200, (encoding, seen.body)
