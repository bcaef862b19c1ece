"""TokenVerifier: options, the order of checks, the classic attacks, the verified-token cache."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import types
from collections.abc import AsyncIterator
from typing import Any
from unittest import mock

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from resource_guard import (
    AccessToken,
    ExpiredTokenError,
    InvalidAudienceError,
    InvalidClaimError,
    InvalidIssuerError,
    InvalidSignatureError,
    InvalidTokenError,
    InvalidTokenTypeError,
    MalformedTokenError,
    TokenVerifier,
    UnknownKeyError,
    UnsupportedAlgorithmError,
)
from resource_guard._keyset import VerificationKey
from resource_guard._token_cache import token_digest
from resource_guard.testing import FakeClock, FakeIssuer
from tests.helpers import b64url, compact, segment
from tests.security._harness import signed

AUDIENCE = "api://orders"


@pytest.fixture
def issuer(clock: FakeClock) -> FakeIssuer:
    return FakeIssuer(audience=AUDIENCE, clock=clock)


@pytest.fixture
async def verifier(issuer: FakeIssuer, clock: FakeClock) -> AsyncIterator[TokenVerifier]:
    async with (
        issuer.async_client() as client,
        TokenVerifier(issuer.issuer, AUDIENCE, http_client=client, clock=clock) as verifier,
    ):
        yield verifier


def forge_hs256(header: dict[str, Any], payload: dict[str, Any], secret: bytes) -> str:
    signing_input = f"{segment(header)}.{segment(payload)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def claims_of(issuer: FakeIssuer, clock: FakeClock) -> dict[str, Any]:
    return {"iss": issuer.issuer, "aud": AUDIENCE, "sub": "u", "exp": clock.now + 300}


# -- the happy path ---------------------------------------------------------------------


async def test_verifies_a_token_and_exposes_its_claims(
    issuer: FakeIssuer, verifier: TokenVerifier, clock: FakeClock
) -> None:
    token = issuer.mint(
        subject="user-1", scopes=("orders:read", "orders:write"), claims={"client_id": "svc"}
    )
    access = await verifier.verify(token)
    assert isinstance(access, AccessToken)
    assert access.subject == "user-1"
    assert access.client_id == "svc"
    assert access.scopes == {"orders:read", "orders:write"}
    assert access.expires_at.timestamp() == access.claims["exp"]
    assert access.claims["aud"] == AUDIENCE
    assert access.issuer == issuer.issuer
    assert access.audience == (AUDIENCE,)
    assert access.key_id == issuer.keys[-1].kid
    assert "user-1" in repr(access)
    assert token not in repr(access)
    with pytest.raises(TypeError):
        access.claims["sub"] = "other"  # type: ignore[index]


@pytest.mark.parametrize(
    "alg",
    ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"],
)
async def test_verifies_every_default_algorithm(
    issuer: FakeIssuer, verifier: TokenVerifier, clock: FakeClock, alg: str
) -> None:
    key = issuer.add_key(alg)
    clock.advance(31)  # past the unknown-kid cooldown of the start-up fetch
    access = await verifier.verify(issuer.mint(algorithm=alg, kid=key.kid, key=key))
    assert access.key_id == key.kid


async def test_client_id_falls_back_to_azp_then_cid(
    issuer: FakeIssuer, verifier: TokenVerifier
) -> None:
    assert (await verifier.verify(issuer.mint(claims={"azp": "a"}))).client_id == "a"
    assert (await verifier.verify(issuer.mint(claims={"cid": "c"}))).client_id == "c"


async def test_client_id_falls_back_to_entra_v1_appid(
    issuer: FakeIssuer, verifier: TokenVerifier
) -> None:
    """Entra ID v1 tokens name the client in ``appid`` only."""
    assert (await verifier.verify(issuer.mint(claims={"appid": "app"}))).client_id == "app"
    with pytest.raises(InvalidClaimError) as refused:
        await verifier.verify(issuer.mint(claims={"appid": 7}))
    assert refused.value.claim == "appid"


async def test_audience_claim_and_claim_values_decide_with_the_claim_named(
    issuer: FakeIssuer, clock: FakeClock
) -> None:
    """Cognito-style: the app client in ``client_id`` is the audience, ``token_use`` must
    be ``access``; refusals name the claim."""
    async with issuer.async_client() as client:
        verifier = TokenVerifier(
            issuer.issuer,
            ["app-1", "app-2"],
            audience_claim="client_id",
            claim_values={"token_use": "access"},
            http_client=client,
            clock=clock,
        )
        assert verifier.audience_claim == "client_id"
        assert dict(verifier.claim_values) == {"token_use": "access"}
        good = {"token_use": "access"}
        token = issuer.mint(client_id="app-2", claims=good, omit=["aud"])
        assert (await verifier.verify(token)).client_id == "app-2"
        with pytest.raises(InvalidAudienceError) as wrong_client:
            await verifier.verify(issuer.mint(client_id="app-3", claims=good))
        assert wrong_client.value.claim == "client_id"
        with pytest.raises(InvalidClaimError) as id_token:
            await verifier.verify(issuer.mint(client_id="app-1", claims={"token_use": "id"}))
        assert (id_token.value.claim, id_token.value.code) == ("token_use", "invalid_claim")
        await verifier.aclose()


async def test_audience_list_matches_any_configured_audience(
    issuer: FakeIssuer, clock: FakeClock
) -> None:
    async with issuer.async_client() as client:
        verifier = TokenVerifier(
            issuer.issuer, ["api://a", AUDIENCE], http_client=client, clock=clock
        )
        token = issuer.mint(audience=["api://x", AUDIENCE])
        assert (await verifier.verify(token)).audience == ("api://x", AUDIENCE)
        await verifier.aclose()


async def test_scope_options_reach_roles_and_permissions(
    issuer: FakeIssuer, clock: FakeClock
) -> None:
    async with issuer.async_client() as client:
        verifier = TokenVerifier(
            issuer.issuer,
            AUDIENCE,
            http_client=client,
            clock=clock,
            scope_claims=("scope", "realm_access.roles"),
            scope_mapper=lambda claims: claims.get("permissions", []),
        )
        token = issuer.mint(
            scopes=("a",),
            claims={"realm_access": {"roles": ["admin"]}, "permissions": ["default:read"]},
        )
        assert (await verifier.verify(token)).scopes == {"a", "admin", "default:read"}
        await verifier.aclose()


# -- the order of checks ----------------------------------------------------------------


async def test_signature_is_checked_before_any_claim(
    issuer: FakeIssuer, verifier: TokenVerifier
) -> None:
    forged = issuer.mint_expired(audience="api://other", key=issuer.generate_key("RS256"))
    with pytest.raises(UnknownKeyError):
        await verifier.verify(forged)
    tampered = _tamper_payload(issuer.mint_expired(), {"aud": "api://other"})
    with pytest.raises(InvalidSignatureError):
        await verifier.verify(tampered)


async def test_algorithm_allow_list_is_checked_before_any_key_is_fetched(
    issuer: FakeIssuer,
) -> None:
    key = issuer.generate_key("ES256")
    token = issuer.mint(algorithm="ES256", key=key, kid="never-published")
    async with issuer.async_client() as client:
        strict = TokenVerifier(issuer.issuer, AUDIENCE, algorithms=["RS256"], http_client=client)
        with pytest.raises(UnsupportedAlgorithmError):
            await strict.verify(token)
    assert strict.key_source.fetch_count == 0
    assert sum(issuer.counts.values()) == 0


async def test_typ_is_checked_after_the_signature(
    issuer: FakeIssuer, verifier: TokenVerifier
) -> None:
    with pytest.raises(InvalidTokenTypeError):
        await verifier.verify(issuer.mint(typ="dpop+jwt"))
    with pytest.raises(UnknownKeyError):
        await verifier.verify(issuer.mint(typ="dpop+jwt", key=issuer.generate_key("RS256")))


# -- classic attacks --------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
@pytest.mark.parametrize("signature", ["", "AAAA"], ids=["empty-sig", "junk-sig"])
async def test_alg_none_is_refused_in_every_casing(
    issuer: FakeIssuer, verifier: TokenVerifier, clock: FakeClock, alg: str, signature: str
) -> None:
    token = f"{segment({'alg': alg, 'typ': 'at+jwt'})}.{segment(claims_of(issuer, clock))}."
    with pytest.raises((UnsupportedAlgorithmError, MalformedTokenError)):
        await verifier.verify(token + signature)


def _public_key_encodings(issuer: FakeIssuer) -> dict[str, bytes]:
    key = issuer.keys[-1]
    public = key.private_key.public_key()
    return {
        "spki-pem": key.public_pem(),
        "pkcs1-pem": public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.PKCS1
        ),
        "spki-der": public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "jwk-json": json.dumps(key.public_jwk()).encode(),
    }


@pytest.mark.parametrize("encoding", ["spki-pem", "pkcs1-pem", "spki-der", "jwk-json"])
@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
async def test_hmac_keyed_with_the_public_key_is_refused(
    issuer: FakeIssuer, verifier: TokenVerifier, clock: FakeClock, encoding: str, alg: str
) -> None:
    secret = _public_key_encodings(issuer)[encoding]
    header = {"alg": alg, "kid": issuer.keys[-1].kid, "typ": "at+jwt"}
    token = forge_hs256(header, claims_of(issuer, clock), secret)
    with pytest.raises(UnsupportedAlgorithmError):
        await verifier.verify(token)


async def test_hmac_can_never_be_configured() -> None:
    with pytest.raises(ValueError, match="HMAC"):
        TokenVerifier("https://idp.example.com", AUDIENCE, algorithms=["RS256", "HS256"])


async def test_embedded_jwk_header_never_selects_a_key(
    issuer: FakeIssuer, verifier: TokenVerifier
) -> None:
    attacker = issuer.generate_key("RS256")
    legit_kid = issuer.keys[-1].kid
    for kid in (attacker.kid, legit_kid):
        token = issuer.mint(key=attacker, kid=kid, headers={"jwk": attacker.public_jwk()})
        with pytest.raises((UnknownKeyError, InvalidSignatureError)):
            await verifier.verify(token)


@pytest.mark.parametrize("header", ["jku", "x5u"])
async def test_jku_and_x5u_are_never_fetched(
    issuer: FakeIssuer, verifier: TokenVerifier, clock: FakeClock, header: str
) -> None:
    attacker = FakeIssuer(audience=AUDIENCE, clock=clock)
    with attacker.serve():
        key = attacker.keys[-1]
        token = issuer.mint(key=key, kid=key.kid, headers={header: attacker.jwks_uri})
        with pytest.raises(UnknownKeyError):
            await verifier.verify(token)
        assert sum(attacker.counts.values()) == 0


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param(bytes(64), id="r=0,s=0"),
        pytest.param(bytes(32) + b"\x01" + bytes(31), id="r=0"),
        pytest.param(
            bytes.fromhex("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551" * 2),
            id="r=s=n",
        ),
        pytest.param(bytes(72), id="der-length"),
    ],
)
async def test_psychic_ecdsa_signatures_are_refused(
    issuer: FakeIssuer, verifier: TokenVerifier, clock: FakeClock, signature: bytes
) -> None:
    key = issuer.add_key("ES256")
    clock.advance(31)
    header_payload = issuer.mint(algorithm="ES256", key=key, kid=key.kid).rsplit(".", 1)[0]
    with pytest.raises(InvalidSignatureError):
        await verifier.verify(f"{header_payload}.{b64url(signature)}")


async def test_unknown_critical_header_is_refused(
    issuer: FakeIssuer, verifier: TokenVerifier
) -> None:
    with pytest.raises(MalformedTokenError, match="critical"):
        await verifier.verify(issuer.mint(headers={"crit": ["urn:x"], "urn:x": 1}))


def _tamper_payload(token: str, changes: dict[str, Any]) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(_b64decode(payload))
    claims.update(changes)
    return f"{header}.{segment(claims)}.{signature}"


def _b64decode(text: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.mark.parametrize(
    "changes",
    [{"sub": "admin"}, {"scope": "orders:admin"}, {"exp": 4_000_000_000}],
    ids=["sub", "scope", "exp"],
)
async def test_tampered_payload_is_refused(
    issuer: FakeIssuer, verifier: TokenVerifier, changes: dict[str, Any]
) -> None:
    with pytest.raises(InvalidSignatureError):
        await verifier.verify(_tamper_payload(issuer.mint(scopes=("orders:read",)), changes))


async def test_tampered_header_is_refused(
    issuer: FakeIssuer, verifier: TokenVerifier, clock: FakeClock
) -> None:
    other = issuer.add_key("RS256")
    clock.advance(31)
    token = issuer.mint()
    _, payload, signature = token.split(".")
    header = segment({"alg": "RS256", "kid": other.kid, "typ": "at+jwt"})
    with pytest.raises(InvalidSignatureError):
        await verifier.verify(f"{header}.{payload}.{signature}")


async def test_signature_of_one_algorithm_under_another_is_refused(
    issuer: FakeIssuer, verifier: TokenVerifier
) -> None:
    token = issuer.mint()  # RS256
    _header, payload, signature = token.split(".")
    relabelled = segment({"alg": "PS256", "kid": issuer.keys[-1].kid, "typ": "at+jwt"})
    with pytest.raises((InvalidSignatureError, UnknownKeyError)):
        await verifier.verify(f"{relabelled}.{payload}.{signature}")


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        pytest.param({"omit": ("exp",)}, InvalidClaimError, id="no-exp"),
        pytest.param({"claims": {"exp": "9999999999"}}, InvalidClaimError, id="exp-string"),
        pytest.param({"claims": {"exp": True}}, InvalidClaimError, id="exp-bool"),
        pytest.param(
            {"claims": {"iss": "https://evil.example"}}, InvalidIssuerError, id="wrong-iss"
        ),
        pytest.param({"audience": "api://billing"}, InvalidAudienceError, id="wrong-aud"),
        pytest.param({"expires_in": -120}, ExpiredTokenError, id="expired"),
    ],
)
async def test_bad_claims_are_refused(
    issuer: FakeIssuer, verifier: TokenVerifier, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        await verifier.verify(issuer.mint(**kwargs))


async def test_malformed_tokens_never_raise_anything_but_invalid_token(
    verifier: TokenVerifier,
) -> None:
    for token in ["", ".", "..", "a.b.c", "ey.ey.ey", compact({"alg": "RS256"}, []), "é.é.é"]:
        with pytest.raises(InvalidTokenError):
            await verifier.verify(token)


async def test_non_string_token_is_malformed(verifier: TokenVerifier) -> None:
    with pytest.raises(MalformedTokenError):
        await verifier.verify(None)  # type: ignore[arg-type]


# -- the verified-token cache -----------------------------------------------------------


@pytest.fixture
def signature_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    original = VerificationKey.verify

    def counting(self: VerificationKey, alg: str, data: bytes, signature: bytes) -> bool:
        calls.append(alg)
        return original(self, alg, data, signature)

    monkeypatch.setattr(VerificationKey, "verify", counting)
    return calls


async def test_a_token_seen_again_skips_the_signature(
    issuer: FakeIssuer, verifier: TokenVerifier, signature_checks: list[str]
) -> None:
    token = issuer.mint()
    first = await verifier.verify(token)
    assert await verifier.verify(token) is first
    assert len(signature_checks) == 1


async def test_cached_answers_only_tokens_verified_before(
    issuer: FakeIssuer, verifier: TokenVerifier, clock: FakeClock
) -> None:
    """The middleware's no-wait path: a token verify() accepted and would accept now;
    None for anything else (then the caller awaits verify())."""
    token = issuer.mint(expires_in=60)
    assert verifier.cached(token) is None
    verified = await verifier.verify(token)
    assert verifier.cached(token) is verified
    assert verifier.cached(token.encode()) is verified  # a header's raw bytes
    for other in (token + "x", token[:-1], " " + token, token.encode() + b"x"):
        assert verifier.cached(other) is None
    for never_cached in ("caf\xe9", b"caf\xe9", None, 42, "a" * 20_000, b"a" * 20_000):
        assert verifier.cached(never_cached) is None  # type: ignore[arg-type]
    clock.advance(60 + 30 + 1)
    assert verifier.cached(token) is None
    with pytest.raises(ExpiredTokenError):
        await verifier.verify(token)


async def test_cached_forgets_a_token_whose_key_was_revoked(
    issuer: FakeIssuer, verifier: TokenVerifier
) -> None:
    token = issuer.mint()
    await verifier.verify(token)
    old = issuer.current_key.kid
    issuer.rotate_keys()
    issuer.remove_key(old)
    assert await verifier.key_source.refresh()
    assert verifier.cached(token) is None
    with pytest.raises(UnknownKeyError):
        await verifier.verify(token)


async def test_cached_starts_a_due_refresh_without_waiting_for_it(
    issuer: FakeIssuer, verifier: TokenVerifier, clock: FakeClock
) -> None:
    token = issuer.mint(expires_in=3600)
    verified = await verifier.verify(token)
    source = verifier.key_source
    fetches = source.fetch_count
    clock.advance(source.refresh_due - clock.now)  # a refresh is due, the keys still usable
    assert clock.now < source.usable_until
    assert verifier.cached(token) is verified  # answered at once
    assert source.fetch_count == fetches  # the refresh is only scheduled...
    for _ in range(100):
        await asyncio.sleep(0)
        if source.fetch_count > fetches:
            break
    assert source.fetch_count == fetches + 1  # ...and runs in the background


async def replaced_verify(self: TokenVerifier, token: str) -> AccessToken:
    raise InvalidTokenError("replaced")


def on_the_instance(verifier: TokenVerifier, monkeypatch: pytest.MonkeyPatch) -> None:
    verifier.verify = types.MethodType(replaced_verify, verifier)  # type: ignore[method-assign]


def mock_patched(verifier: TokenVerifier, monkeypatch: pytest.MonkeyPatch) -> None:
    patcher = mock.patch.object(verifier, "verify", side_effect=InvalidTokenError("mocked"))
    patcher.start()
    monkeypatch.setattr(verifier, "_test_patcher", patcher, raising=False)


def on_the_class(verifier: TokenVerifier, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TokenVerifier, "verify", replaced_verify)


def in_a_subclass(verifier: TokenVerifier, monkeypatch: pytest.MonkeyPatch) -> None:
    class DenyList(TokenVerifier):
        async def verify(self, token: str) -> AccessToken:
            return await super().verify(token)

    monkeypatch.setattr(verifier, "__class__", DenyList)


OVERRIDES = {
    "assigned-on-the-instance": on_the_instance,
    "mock-patch-object": mock_patched,
    "patched-on-the-class": on_the_class,
    "subclass-override": in_a_subclass,
}


@pytest.mark.parametrize("override", OVERRIDES.values(), ids=OVERRIDES.keys())
async def test_cached_is_none_whenever_verify_is_overridden(
    issuer: FakeIssuer, verifier: TokenVerifier, monkeypatch: pytest.MonkeyPatch, override: Any
) -> None:
    """Whoever replaces verify() sees every token: cached() never answers in its place."""
    token = issuer.mint()
    await verifier.verify(token)
    assert verifier.cached(token) is not None
    try:
        override(verifier, monkeypatch)
        assert verifier.cached(token) is None
        assert verifier.cached(token.encode()) is None
    finally:
        patcher = getattr(verifier, "_test_patcher", None)
        if patcher is not None:
            patcher.stop()


async def test_cached_tokens_still_expire(
    issuer: FakeIssuer, verifier: TokenVerifier, clock: FakeClock
) -> None:
    token = issuer.mint(expires_in=60)
    await verifier.verify(token)
    clock.advance(60 + 30 + 1)
    with pytest.raises(ExpiredTokenError):
        await verifier.verify(token)


async def test_cached_tokens_are_not_served_before_nbf(
    issuer: FakeIssuer, verifier: TokenVerifier, clock: FakeClock
) -> None:
    token = issuer.mint(claims={"nbf": clock.now - 10})
    await verifier.verify(token)
    clock.advance(-100)  # the wall clock stepped back
    with pytest.raises(InvalidClaimError):
        await verifier.verify(token)


async def test_cache_can_be_turned_off(
    issuer: FakeIssuer, clock: FakeClock, signature_checks: list[str]
) -> None:
    async with issuer.async_client() as client:
        verifier = TokenVerifier(
            issuer.issuer, AUDIENCE, http_client=client, clock=clock, cache_size=0
        )
        token = issuer.mint()
        await verifier.verify(token)
        await verifier.verify(token)
        assert len(signature_checks) == 2


async def test_cache_is_bounded(issuer: FakeIssuer, clock: FakeClock) -> None:
    async with issuer.async_client() as client:
        verifier = TokenVerifier(
            issuer.issuer, AUDIENCE, http_client=client, clock=clock, cache_size=8
        )
        for index in range(20):
            await verifier.verify(issuer.mint(subject=f"user-{index}"))
        assert verifier.token_cache is not None
        assert len(verifier.token_cache) == 8


@pytest.mark.parametrize("token", ["a" * 1_000_000, b"a" * 1_000_000], ids=["str", "bytes"])
async def test_an_oversized_token_is_refused_before_it_is_hashed(
    verifier: TokenVerifier, monkeypatch: pytest.MonkeyPatch, token: str | bytes
) -> None:
    """Size is the first check: a megabyte of header costs nothing but a length test."""
    hashed: list[int] = []
    real_hash = token_digest

    def counting(data: bytes) -> Any:
        hashed.append(len(data))
        return real_hash(data)

    monkeypatch.setattr("resource_guard._verifier.token_digest", counting)
    assert verifier.cached(token) is None
    if isinstance(token, str):
        with pytest.raises(MalformedTokenError, match="larger"):
            await verifier.verify(token)
    assert hashed == []
    verifier.cached("a.b.c")
    assert hashed == [5]  # the probe is the hash the verifier really uses


async def test_a_refused_token_is_never_cached(issuer: FakeIssuer, verifier: TokenVerifier) -> None:
    token = issuer.mint(audience="api://billing")
    for _ in range(2):
        with pytest.raises(InvalidAudienceError):
            await verifier.verify(token)
    assert verifier.token_cache is not None
    assert len(verifier.token_cache) == 0


# -- options ----------------------------------------------------------------------------

ISSUER = "https://idp.example.com"


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        pytest.param({"issuer": ""}, ValueError, "issuer", id="issuer-empty"),
        pytest.param({"issuer": "idp.example.com"}, ValueError, "absolute", id="issuer-relative"),
        pytest.param({"issuer": "http://idp.example.com"}, ValueError, "https", id="issuer-http"),
        pytest.param({"issuer": "https://idp/?x=1"}, ValueError, "query", id="issuer-query"),
        pytest.param({"issuer": "https://u:p@idp"}, ValueError, "credentials", id="issuer-creds"),
        pytest.param({"audience": ""}, ValueError, "audience", id="audience-empty"),
        pytest.param({"audience": []}, ValueError, "audience", id="audience-empty-list"),
        pytest.param({"audience": None}, TypeError, "audience", id="audience-none"),
        pytest.param({"audience": [1]}, ValueError, "audience", id="audience-number"),
        pytest.param({"jwks_uri": "http://idp/jwks"}, ValueError, "https", id="jwks-http"),
        pytest.param({"algorithms": []}, ValueError, "algorithms", id="algorithms-empty"),
        pytest.param({"algorithms": ["none"]}, ValueError, "none", id="algorithms-none"),
        pytest.param({"algorithms": ["HS256"]}, ValueError, "HMAC", id="algorithms-hs256"),
        pytest.param({"algorithms": ["RS1"]}, ValueError, "unsupported", id="algorithms-unknown"),
        pytest.param({"leeway": -1}, ValueError, "leeway", id="leeway-negative"),
        pytest.param({"leeway": 3600}, ValueError, "leeway", id="leeway-huge"),
        pytest.param({"leeway": "30"}, TypeError, "leeway", id="leeway-string"),
        pytest.param({"leeway": True}, TypeError, "leeway", id="leeway-bool"),
        pytest.param({"leeway": float("nan")}, ValueError, "leeway", id="leeway-nan"),
        pytest.param({"refresh_interval": 0}, ValueError, "refresh_interval", id="refresh-0"),
        pytest.param({"cooldown": -1}, ValueError, "cooldown", id="cooldown-negative"),
        pytest.param({"max_stale": 10**9}, ValueError, "max_stale", id="max-stale-huge"),
        pytest.param({"timeout": 0}, ValueError, "timeout", id="timeout-0"),
        pytest.param({"http_client": object()}, TypeError, "AsyncClient", id="client-type"),
        pytest.param({"scope_mapper": "x"}, TypeError, "scope_mapper", id="mapper"),
        pytest.param({"strict": "yes"}, TypeError, "strict", id="strict"),
        pytest.param({"clock": 5}, TypeError, "clock", id="clock"),
        pytest.param({"max_token_bytes": 10}, ValueError, "max_token_bytes", id="size-small"),
        pytest.param({"cache_size": -1}, ValueError, "cache_size", id="cache-negative"),
        pytest.param({"allow_insecure_http": 1}, TypeError, "allow_insecure_http", id="insecure"),
        pytest.param({"required_claims": [""]}, ValueError, "required_claims", id="required"),
        pytest.param({"audience_claim": 1}, TypeError, "audience_claim", id="aud-claim-type"),
        pytest.param({"audience_claim": " "}, ValueError, "audience_claim", id="aud-claim-empty"),
        pytest.param({"claim_values": ["x"]}, TypeError, "claim_values", id="values-list"),
        pytest.param({"claim_values": {"": "x"}}, ValueError, "claim_values", id="values-name"),
        pytest.param({"claim_values": {"v": 1.5}}, TypeError, "claim_values", id="values-float"),
        pytest.param({"claim_values": {"v": None}}, TypeError, "claim_values", id="values-none"),
    ],
)
def test_bad_options_fail_at_construction(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    options: dict[str, Any] = {"issuer": ISSUER, "audience": AUDIENCE, **kwargs}
    with pytest.raises(error, match=message):
        TokenVerifier(**options)


@pytest.mark.parametrize(
    "issuer_url", ["http://127.0.0.1:8080", "http://localhost:9000/realms/x", "http://[::1]:1"]
)
def test_plain_http_is_allowed_on_loopback(issuer_url: str) -> None:
    assert TokenVerifier(issuer_url, AUDIENCE).issuer == issuer_url


def test_plain_http_elsewhere_needs_an_explicit_opt_out() -> None:
    verifier = TokenVerifier("http://idp.internal", AUDIENCE, allow_insecure_http=True)
    assert verifier.issuer == "http://idp.internal"


def test_defaults_are_the_asymmetric_set() -> None:
    verifier = TokenVerifier(ISSUER, AUDIENCE)
    assert verifier.algorithms == {
        "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
        "ES256", "ES384", "ES512", "EdDSA", "Ed25519",
    }  # fmt: skip
    assert verifier.audiences == (AUDIENCE,)


def test_from_env_reads_every_variable() -> None:
    verifier = TokenVerifier.from_env(
        {
            "RESOURCE_GUARD_ISSUER": ISSUER,
            "RESOURCE_GUARD_AUDIENCE": "api://a, api://b",
            "RESOURCE_GUARD_ALGORITHMS": "RS256 ES256",
            "RESOURCE_GUARD_LEEWAY": "10",
            "RESOURCE_GUARD_STRICT": "true",
            "RESOURCE_GUARD_CACHE_SIZE": "16",
            "RESOURCE_GUARD_JWKS_URI": ISSUER + "/keys",
            "RESOURCE_GUARD_AUDIENCE_CLAIM": "client_id",
            "RESOURCE_GUARD_CLAIM_VALUES": "token_use=access, typ=Bearer",
        }
    )
    assert verifier.audience_claim == "client_id"
    assert dict(verifier.claim_values) == {"token_use": "access", "typ": "Bearer"}
    assert verifier.audiences == ("api://a", "api://b")
    assert verifier.algorithms == {"RS256", "ES256"}
    assert verifier._leeway == 10
    assert verifier._claims.strict
    assert verifier.token_cache is not None
    assert verifier.token_cache.maxsize == 16


@pytest.mark.parametrize("value", ["0", "false", "No", "OFF"])
def test_from_env_reads_a_false_flag(value: str) -> None:
    env = {"RESOURCE_GUARD_ISSUER": ISSUER, "RESOURCE_GUARD_AUDIENCE": "a"}
    verifier = TokenVerifier.from_env({**env, "RESOURCE_GUARD_STRICT": value})
    assert not verifier._claims.strict


def test_from_env_overrides_win() -> None:
    env = {"RESOURCE_GUARD_ISSUER": ISSUER, "RESOURCE_GUARD_AUDIENCE": "api://a"}
    assert TokenVerifier.from_env(env, audience="api://b").audiences == ("api://b",)


def test_from_env_names_missing_variables() -> None:
    with pytest.raises(ValueError, match="RESOURCE_GUARD_ISSUER, RESOURCE_GUARD_AUDIENCE"):
        TokenVerifier.from_env({})


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RESOURCE_GUARD_LEEWAY", "soon"),
        ("RESOURCE_GUARD_STRICT", "maybe"),
        ("RESOURCE_GUARD_CLAIM_VALUES", "token_use"),
    ],
)
def test_from_env_names_the_bad_variable(variable: str, value: str) -> None:
    env = {"RESOURCE_GUARD_ISSUER": ISSUER, "RESOURCE_GUARD_AUDIENCE": "a", variable: value}
    with pytest.raises(ValueError, match=variable):
        TokenVerifier.from_env(env)


def test_from_env_uses_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESOURCE_GUARD_ISSUER", ISSUER)
    monkeypatch.setenv("RESOURCE_GUARD_AUDIENCE", AUDIENCE)
    assert TokenVerifier.from_env().issuer == ISSUER


async def test_token_endpoint_comes_from_discovery(issuer: FakeIssuer) -> None:
    async with issuer.async_client() as client:
        verifier = TokenVerifier(issuer.issuer, AUDIENCE, http_client=client)
        assert await verifier.token_endpoint() == issuer.token_endpoint


async def test_token_endpoint_is_none_when_discovery_fails(issuer: FakeIssuer) -> None:
    issuer.fault("status", endpoint="discovery", status=500)
    issuer.fault("status", endpoint="oauth_metadata", status=500)
    async with issuer.async_client() as client:
        verifier = TokenVerifier(issuer.issuer, AUDIENCE, http_client=client)
        assert await verifier.token_endpoint() is None


def test_httpx_client_type_is_the_async_one() -> None:
    with pytest.raises(TypeError):
        TokenVerifier(ISSUER, AUDIENCE, http_client=httpx.Client())  # type: ignore[arg-type]


async def test_the_payload_is_parsed_only_after_the_signature_verified(
    issuer: FakeIssuer, verifier: TokenVerifier
) -> None:
    """jose's order: a forged token with an unreadable payload is a bad signature, never a
    parse of attacker bytes; the same payload properly signed is a malformed token."""
    good = issuer.mint()
    header = good.split(".")[0]
    forged = f"{header}.{b64url(b'{not json')}.{good.split('.')[2]}"
    with pytest.raises(InvalidSignatureError):
        await verifier.verify(forged)
    key = issuer.current_key
    unreadable = signed(header, b64url(b"{not json"), key, key.alg)
    with pytest.raises(MalformedTokenError, match="payload"):
        await verifier.verify(unreadable)
