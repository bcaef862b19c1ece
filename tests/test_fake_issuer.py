"""FakeIssuer: discovery, JWKS, minting, key management, token endpoint, faults, serving."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import socket
import ssl
import threading
import time
import types
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from resource_guard.testing import (
    CURRENT,
    ENDPOINTS,
    FAULT_KINDS,
    SUPPORTED_ALGORITHMS,
    FakeIssuer,
    SigningKey,
    generate_key,
)

Call = Callable[..., httpx.Response]
MODES = ("transport-sync", "transport-async", "loopback")
TLS = ssl.create_default_context()  # built once: every httpx client would build its own
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


class FrozenClock:
    """An epoch-seconds clock that moves only when told to."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake() -> FakeIssuer:
    return FakeIssuer(algorithm="ES256")


def _raw(reply: httpx.Response, wire: bytes) -> httpx.Response:
    """The reply with its body exactly as sent (not decompressed)."""
    headers = [(k, v) for k, v in reply.headers.multi_items() if k != "content-encoding"]
    raw = httpx.Response(reply.status_code, headers=headers, content=wire)
    raw.extensions["content-encoding"] = reply.headers.get("content-encoding")
    return raw


@pytest.fixture(params=MODES)
def call(request: pytest.FixtureRequest, fake: FakeIssuer) -> Iterator[Call]:
    """``call(method, url, raw=False, **kw)`` over the sync transport, the async one or
    loopback HTTP; ``raw=True`` returns the body as sent on the wire."""

    def sync_call(client: httpx.Client) -> Call:
        def call(method: str, url: str, raw: bool = False, **options: Any) -> httpx.Response:
            with client.stream(method, url, **options) as reply:
                if raw:
                    return _raw(reply, b"".join(reply.iter_raw()))
                reply.read()
                return reply

        return call

    if request.param == "transport-sync":
        with fake.client() as client:
            yield sync_call(client)
    elif request.param == "transport-async":

        def call_async(method: str, url: str, raw: bool = False, **options: Any) -> httpx.Response:
            async def run() -> httpx.Response:
                async with (
                    fake.async_client() as client,
                    client.stream(method, url, **options) as reply,
                ):
                    if raw:
                        return _raw(reply, b"".join([chunk async for chunk in reply.aiter_raw()]))
                    await reply.aread()
                    return reply

            return asyncio.run(run())

        yield call_async
    else:
        with fake.serve(), httpx.Client(verify=TLS) as client:
            yield sync_call(client)


def verify(fake: FakeIssuer, token: str, **options: Any) -> dict[str, Any]:
    """Verify ``token`` with PyJWT against the published JWKS."""
    header = jwt.get_unverified_header(token)
    key = jwt.PyJWKSet.from_dict(fake.jwks())[header["kid"]]
    options.setdefault("audience", fake.audience)
    decoded: dict[str, Any] = jwt.decode(
        token, key, algorithms=[header["alg"]], issuer=fake.issuer, **options
    )
    return decoded


def header_of(token: str) -> Any:
    """The JOSE header, decoded without any validation."""
    segment = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def basic(client_id: str, secret: str) -> str:
    """An RFC 6749 §2.3.1 Basic header: both parts form-urlencoded before base64."""
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return "Basic " + base64.b64encode(raw).decode()


# Construction ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"issuer": "issuer.example.test"}, ValueError),
        ({"issuer": "ftp://issuer.example.test"}, ValueError),
        ({"issuer": "https://issuer.example.test?x=1"}, ValueError),
        ({"issuer": "https://issuer.example.test#frag"}, ValueError),
        ({"issuer": ""}, TypeError),
        ({"audience": ""}, TypeError),
        ({"audience": ()}, ValueError),
        ({"audience": 5}, TypeError),
        ({"algorithm": "HS256"}, ValueError),
        ({"algorithm": "none"}, ValueError),
        ({"clock": 5}, TypeError),
        ({"jwks_max_age": -1}, ValueError),
        ({"jwks_max_age": 1.5}, ValueError),
    ],
    ids=[
        "issuer-no-scheme",
        "issuer-ftp",
        "issuer-query",
        "issuer-fragment",
        "issuer-empty",
        "audience-empty",
        "audience-empty-list",
        "audience-int",
        "alg-hmac",
        "alg-none",
        "clock-not-callable",
        "max-age-negative",
        "max-age-float",
    ],
)
def test_bad_construction_options_are_refused(options: dict[str, Any], error: type) -> None:
    with pytest.raises(error):
        FakeIssuer(**options)


def test_repr_names_issuer_and_algorithm() -> None:
    assert (
        repr(FakeIssuer()) == "FakeIssuer(issuer='https://issuer.example.test', algorithm='RS256')"
    )


# Metadata ------------------------------------------------------------------------------


def test_discovery_document_advertises_the_endpoints(fake: FakeIssuer, call: Call) -> None:
    reply = call("GET", fake.discovery_url)
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/json"
    document = reply.json()
    assert document["issuer"] == fake.issuer
    assert document["jwks_uri"] == fake.jwks_uri
    assert document["token_endpoint"] == fake.token_endpoint
    assert document["grant_types_supported"] == ["client_credentials"]
    assert document["token_endpoint_auth_methods_supported"] == [
        "client_secret_basic",
        "client_secret_post",
    ]
    assert document["id_token_signing_alg_values_supported"] == ["ES256"]
    assert document["subject_types_supported"] == ["public"]


def test_oauth_metadata_is_rfc8414_shaped(fake: FakeIssuer, call: Call) -> None:
    fake.register_client("svc", "secret", scopes=("b", "a"))
    document = call("GET", fake.oauth_metadata_url).json()
    assert document["issuer"] == fake.issuer
    assert document["jwks_uri"] == fake.jwks_uri
    assert document["token_endpoint"] == fake.token_endpoint
    assert document["scopes_supported"] == ["a", "b"]
    assert "subject_types_supported" not in document


def test_issuer_with_a_path_places_well_known_urls_per_spec() -> None:
    fake = FakeIssuer("https://idp.example.test/oauth2/default", algorithm="EdDSA")
    assert fake.discovery_url == (
        "https://idp.example.test/oauth2/default/.well-known/openid-configuration"
    )
    assert fake.oauth_metadata_url == (
        "https://idp.example.test/.well-known/oauth-authorization-server/oauth2/default"
    )
    assert fake.jwks_uri == "https://idp.example.test/oauth2/default/jwks.json"
    with fake.client() as client:
        for url in (fake.discovery_url, fake.oauth_metadata_url):
            assert client.get(url).json()["issuer"] == "https://idp.example.test/oauth2/default"
        assert client.get(fake.jwks_uri).status_code == 200


def test_metadata_overrides_add_replace_and_remove_members(fake: FakeIssuer) -> None:
    fake.metadata_overrides = {"issuer": "https://evil.test", "jwks_uri": None, "x-extra": 1}
    for oidc in (True, False):
        document = fake.metadata(oidc=oidc)
        assert document["issuer"] == "https://evil.test"
        assert "jwks_uri" not in document
        assert document["x-extra"] == 1


def test_unknown_path_is_404(fake: FakeIssuer, call: Call) -> None:
    reply = call("GET", fake.issuer + "/nope")
    assert reply.status_code == 404
    assert sum(fake.counts.values()) == 0


def test_metadata_endpoints_refuse_post(fake: FakeIssuer, call: Call) -> None:
    reply = call("POST", fake.jwks_uri)
    assert reply.status_code == 405
    assert reply.headers["allow"] == "GET"


# JWKS -----------------------------------------------------------------------------------


def test_jwks_publishes_public_keys_only(fake: FakeIssuer, call: Call) -> None:
    fake.add_key("EdDSA")
    reply = call("GET", fake.jwks_uri)
    assert reply.status_code == 200
    assert reply.headers["cache-control"] == "public, max-age=300"
    keys = reply.json()["keys"]
    assert [key["kid"] for key in keys] == [key.kid for key in fake.keys]
    for key in keys:
        assert key["use"] == "sig"
        assert key["alg"] in SUPPORTED_ALGORITHMS
        assert not PRIVATE_MEMBERS & key.keys()


def test_jwks_max_age_is_checked_when_set(fake: FakeIssuer) -> None:
    with pytest.raises(ValueError, match="jwks_max_age"):
        fake.jwks_max_age = -5
    assert fake.jwks_max_age == 300


@pytest.mark.parametrize(("max_age", "header"), [(60, "public, max-age=60"), (None, None)])
def test_jwks_max_age_is_configurable(
    fake: FakeIssuer, max_age: int | None, header: str | None
) -> None:
    fake.jwks_max_age = max_age
    with fake.client() as client:
        assert client.get(fake.jwks_uri).headers.get("cache-control") == header


# Keys -------------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", SUPPORTED_ALGORITHMS)
def test_minted_tokens_verify_with_the_published_key(alg: str) -> None:
    fake = FakeIssuer(algorithm=alg)
    token = fake.mint(scopes=("orders:read",))
    assert jwt.get_unverified_header(token)["alg"] == alg
    assert verify(fake, token)["scope"] == "orders:read"


@pytest.mark.parametrize(
    ("alg", "kty", "crv"),
    [
        ("PS256", "RSA", None),
        ("ES256", "EC", "P-256"),
        ("ES384", "EC", "P-384"),
        ("ES512", "EC", "P-521"),
        ("EdDSA", "OKP", "Ed25519"),
    ],
)
def test_public_jwk_has_the_right_key_type(alg: str, kty: str, crv: str | None) -> None:
    jwk = generate_key(alg, "k1").public_jwk()
    assert (jwk["kty"], jwk.get("crv"), jwk["kid"], jwk["alg"]) == (kty, crv, "k1", alg)


def test_default_kid_is_the_rfc7638_thumbprint() -> None:
    key = generate_key("ES256")
    members = key.public_jwk()
    canonical = json.dumps({k: members[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).digest()
    assert key.kid == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def test_private_exports_round_trip() -> None:
    key = generate_key("ES256")
    loaded = serialization.load_pem_private_key(key.private_pem(), password=None)
    assert (
        loaded.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        == key.public_pem()
    )
    assert "d" in key.private_jwk()
    assert "private_key" not in repr(key)


@pytest.mark.parametrize("alg", ["RS256", "ES384", "EdDSA"])
def test_private_jwk_loads_as_the_same_key(alg: str) -> None:
    key = generate_key(alg)
    private = jwt.PyJWK(key.private_jwk()).key
    token = jwt.encode({"sub": "x"}, private, algorithm=alg)
    public = jwt.PyJWK(key.public_jwk()).key
    assert jwt.decode(token, public, algorithms=[alg]) == {"sub": "x"}


@pytest.mark.parametrize(
    ("alg", "kid", "key_size", "error"),
    [
        ("HS256", None, None, ValueError),
        ("RS256", "", None, TypeError),
        ("ES256", None, 2048, ValueError),
        ("RS256", None, 512, ValueError),
        ("RS256", None, True, ValueError),
    ],
    ids=["hmac", "empty-kid", "key-size-on-ec", "rsa-512", "key-size-bool"],
)
def test_generate_key_refuses_bad_options(
    alg: str, kid: str | None, key_size: int | None, error: type
) -> None:
    with pytest.raises(error):
        generate_key(alg, kid, key_size=key_size)


def test_generated_key_is_not_published(fake: FakeIssuer) -> None:
    forged = fake.generate_key("ES256")
    assert forged.kid not in {key["kid"] for key in fake.jwks()["keys"]}
    token = fake.mint(key=forged)
    with pytest.raises(KeyError):
        verify(fake, token)


def test_weak_rsa_key_signs_without_warning(fake: FakeIssuer) -> None:
    weak = fake.add_key("RS256", key_size=1024)
    token = fake.mint(key=weak)
    assert jwt.get_unverified_header(token)["kid"] == weak.kid


def test_rotate_keys_keeps_old_key_published(fake: FakeIssuer) -> None:
    old_token = fake.mint()
    old = fake.current_key
    new = fake.rotate_keys()
    assert fake.current_key is new
    assert new.alg == old.alg
    assert [key.kid for key in fake.keys] == [old.kid, new.kid]
    assert jwt.get_unverified_header(fake.mint())["kid"] == new.kid
    assert verify(fake, old_token)["sub"] == "user-123"


def test_rotate_keys_can_change_algorithm(fake: FakeIssuer) -> None:
    assert fake.rotate_keys("EdDSA").alg == "EdDSA"
    assert jwt.get_unverified_header(fake.mint())["alg"] == "EdDSA"


def test_add_key_can_publish_a_prepared_key(fake: FakeIssuer) -> None:
    prepared = generate_key("ES384", "prepared")
    assert fake.add_key(prepared, make_current=True) is prepared
    assert fake.current_key is prepared


def test_remove_key_unpublishes_it(fake: FakeIssuer) -> None:
    old = fake.current_key
    token = fake.mint()
    new = fake.rotate_keys()
    fake.remove_key(old.kid)
    assert [key["kid"] for key in fake.jwks()["keys"]] == [new.kid]
    with pytest.raises(KeyError):
        verify(fake, token)


def test_removing_the_current_key_falls_back_to_the_newest_one(fake: FakeIssuer) -> None:
    older = fake.current_key
    newer = fake.add_key("EdDSA")
    fake.remove_key(older.kid)
    assert fake.current_key is newer


def test_minting_with_no_published_key_says_what_to_do(fake: FakeIssuer) -> None:
    fake.remove_key(fake.current_key.kid)
    assert fake.jwks() == {"keys": []}
    with pytest.raises(RuntimeError, match="add_key"):
        fake.mint()


def test_remove_unknown_kid_raises_key_error(fake: FakeIssuer) -> None:
    with pytest.raises(KeyError):
        fake.remove_key("no-such-kid")


def test_raw_jwks_are_published_verbatim_and_removable(fake: FakeIssuer) -> None:
    raw = {"kty": "oct", "k": "c2VjcmV0", "kid": "sym"}
    fake.publish_raw_jwk(raw)
    fake.publish_raw_jwk("not a JWK")
    raw["kid"] = "mutated-after-publishing"
    keys = fake.jwks()["keys"]
    assert keys[1:] == [{"kty": "oct", "k": "c2VjcmV0", "kid": "sym"}, "not a JWK"]
    fake.remove_key("sym")
    assert fake.jwks()["keys"][1:] == ["not a JWK"]
    assert [key.kid for key in fake.keys] == [fake.current_key.kid]


def test_raw_jwk_must_be_json(fake: FakeIssuer) -> None:
    with pytest.raises(TypeError):
        fake.publish_raw_jwk({"kty": object()})


# Minting ---------------------------------------------------------------------------------


def test_minted_token_has_the_default_claims_and_header() -> None:
    clock = FrozenClock()
    fake = FakeIssuer(algorithm="EdDSA", clock=clock)
    token = fake.mint()
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "EdDSA", "kid": fake.current_key.kid, "typ": "at+jwt"}
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims.keys() == {"iss", "sub", "aud", "iat", "exp", "jti"}
    assert claims["iss"] == "https://issuer.example.test"
    assert claims["sub"] == "user-123"
    assert claims["aud"] == "api://default"
    assert (claims["iat"], claims["exp"]) == (1_700_000_000, 1_700_000_300)


def test_time_follows_the_injected_clock() -> None:
    clock = FrozenClock()
    fake = FakeIssuer(algorithm="EdDSA", clock=clock)
    clock.now += 1000
    claims = jwt.decode(fake.mint(expires_in=60), options={"verify_signature": False})
    assert (claims["iat"], claims["exp"]) == (1_700_001_000, 1_700_001_060)


def test_each_token_gets_a_fresh_jti(fake: FakeIssuer) -> None:
    first, second = (verify(fake, fake.mint())["jti"] for _ in range(2))
    assert first != second


def test_mint_options_shape_claims(fake: FakeIssuer) -> None:
    token = fake.mint(
        "svc",
        scopes="a b",
        audience=["api://one", "api://two"],
        client_id="cli",
        claims={"sub": "override", "extra": [1, 2]},
        omit=("jti",),
    )
    claims = verify(fake, token, audience="api://two")
    assert claims["sub"] == "override"
    assert claims["scope"] == "a b"
    assert claims["aud"] == ["api://one", "api://two"]
    assert claims["client_id"] == "cli"
    assert claims["extra"] == [1, 2]
    assert "jti" not in claims


def test_subject_none_omits_sub(fake: FakeIssuer) -> None:
    assert "sub" not in verify(fake, fake.mint(None))


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"kid": None}, {"alg": "ES256", "typ": "at+jwt"}),
        ({"kid": "other"}, {"alg": "ES256", "typ": "at+jwt", "kid": "other"}),
        ({"kid": None, "typ": None}, {"alg": "ES256"}),
        ({"kid": None, "typ": "JWT"}, {"alg": "ES256", "typ": "JWT"}),
        (
            {"kid": None, "headers": {"jku": "https://evil.test/jwks", "crit": ["exp"]}},
            {"alg": "ES256", "typ": "at+jwt", "jku": "https://evil.test/jwks", "crit": ["exp"]},
        ),
    ],
    ids=["no-kid", "other-kid", "no-typ", "typ-jwt", "extra-headers"],
)
def test_header_options(
    fake: FakeIssuer, options: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert header_of(fake.mint(**options)) == expected


def test_minting_another_alg_publishes_a_key_for_it(fake: FakeIssuer) -> None:
    token = fake.mint(alg="PS384")
    assert jwt.get_unverified_header(token)["alg"] == "PS384"
    assert verify(fake, token)["sub"] == "user-123"
    assert fake.current_key.alg == "ES256"
    fake.mint(alg="PS384")
    assert [key.alg for key in fake.keys] == ["ES256", "PS384"]


def test_minting_the_current_alg_uses_the_current_key(fake: FakeIssuer) -> None:
    fake.add_key("ES256")
    header = jwt.get_unverified_header(fake.mint(alg="ES256"))
    assert header["kid"] == fake.current_key.kid


def test_current_sentinel_reads_well_in_signatures() -> None:
    assert repr(CURRENT) == "CURRENT"


def test_alg_none_makes_an_unsigned_token(fake: FakeIssuer) -> None:
    token = fake.mint(alg="none")
    assert token.endswith(".")
    assert jwt.get_unverified_header(token) == {"alg": "none", "typ": "at+jwt"}


def test_hmac_secret_signs_hs256(fake: FakeIssuer) -> None:
    secret = b"s" * 32
    token = fake.mint(alg="HS256", key=secret)
    assert jwt.decode(token, secret, algorithms=["HS256"], audience=fake.audience)["sub"]


def test_short_hmac_secret_signs_without_warning(fake: FakeIssuer) -> None:
    assert fake.mint(alg="HS256", key="short").count(".") == 2


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"key": "secret"}, ValueError),
        ({"key": "secret", "alg": "RS256"}, ValueError),
        ({"alg": "HS256"}, ValueError),
        ({"expires_in": 1.5}, TypeError),
        ({"scopes": ("a b",)}, ValueError),
        ({"scopes": 5}, TypeError),
        ({"audience": ""}, TypeError),
        ({"issued_at": float("nan")}, TypeError),
    ],
    ids=[
        "secret-without-alg",
        "secret-with-rsa-alg",
        "hmac-without-secret",
        "float-lifetime",
        "scope-with-space",
        "scopes-int",
        "empty-audience",
        "nan-time",
    ],
)
def test_bad_mint_options_are_refused(
    fake: FakeIssuer, options: dict[str, Any], error: type
) -> None:
    with pytest.raises(error):
        fake.mint(**options)


def test_mint_expired_is_rejected_as_expired(fake: FakeIssuer) -> None:
    token = fake.mint_expired(scopes=("a",))
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] <= time.time() - 3600
    assert claims["scope"] == "a"
    with pytest.raises(jwt.ExpiredSignatureError):
        verify(fake, token, leeway=30)


def test_mint_not_yet_valid_is_rejected_as_immature(fake: FakeIssuer) -> None:
    token = fake.mint_not_yet_valid(ahead=600, claims={"extra": True})
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["nbf"] == claims["iat"] >= time.time() + 599
    assert claims["exp"] > claims["nbf"]
    assert claims["extra"] is True
    with pytest.raises(jwt.ImmatureSignatureError):
        verify(fake, token, leeway=30)


# Token endpoint ---------------------------------------------------------------------------

SPECIAL_ID = "svc:orders+1 é"
SPECIAL_SECRET = "p@ss:w+rd/=%&"


def test_token_endpoint_basic_auth_with_special_characters(fake: FakeIssuer, call: Call) -> None:
    fake.register_client(SPECIAL_ID, SPECIAL_SECRET, scopes=("orders:read", "orders:write"))
    reply = call(
        "POST",
        fake.token_endpoint,
        data={"grant_type": "client_credentials"},
        headers={"Authorization": basic(SPECIAL_ID, SPECIAL_SECRET)},
    )
    assert reply.status_code == 200, reply.text
    assert reply.headers["cache-control"] == "no-store"
    body = reply.json()
    assert body.keys() == {"access_token", "token_type", "expires_in", "scope"}
    assert (body["token_type"], body["expires_in"]) == ("Bearer", 300)
    assert body["scope"] == "orders:read orders:write"
    token = body["access_token"]
    assert jwt.get_unverified_header(token)["typ"] == "at+jwt"
    claims = verify(fake, token)
    assert claims.keys() == {"iss", "sub", "aud", "iat", "exp", "jti", "client_id", "scope"}
    assert claims["iss"] == fake.issuer
    assert claims["sub"] == claims["client_id"] == SPECIAL_ID
    assert claims["aud"] == "api://default"
    assert claims["scope"] == "orders:read orders:write"
    assert claims["exp"] - claims["iat"] == 300
    assert fake.counts["token"] == 1


def test_token_endpoint_client_secret_post(fake: FakeIssuer, call: Call) -> None:
    fake.register_client(SPECIAL_ID, SPECIAL_SECRET, scopes=("a", "b"), expires_in=60)
    form = {
        "grant_type": "client_credentials",
        "client_id": SPECIAL_ID,
        "client_secret": SPECIAL_SECRET,
        "scope": "b",
    }
    reply = call("POST", fake.token_endpoint, data=form)
    assert reply.status_code == 200, reply.text
    assert (reply.json()["scope"], reply.json()["expires_in"]) == ("b", 60)
    claims = verify(fake, reply.json()["access_token"])
    assert (claims["scope"], claims["client_id"]) == ("b", SPECIAL_ID)


def test_token_endpoint_grants_requested_audience(fake: FakeIssuer) -> None:
    fake.register_client("svc", "secret", audience=("api://a", "api://b"))
    fake.register_client("open", "secret")
    with fake.client() as client:
        restricted = client.post(
            fake.token_endpoint, data={"grant_type": "client_credentials"}, auth=("svc", "secret")
        ).json()
        chosen = client.post(
            fake.token_endpoint,
            data={"grant_type": "client_credentials", "audience": "api://b"},
            auth=("svc", "secret"),
        ).json()
        anything = client.post(
            fake.token_endpoint,
            data={"grant_type": "client_credentials", "audience": "api://z"},
            auth=("open", "secret"),
        ).json()
    assert "scope" not in restricted
    assert verify(fake, restricted["access_token"], audience="api://a")["aud"] == "api://a"
    assert verify(fake, chosen["access_token"], audience="api://b")["aud"] == "api://b"
    assert verify(fake, anything["access_token"], audience="api://z")["aud"] == "api://z"


def _raw_basic(text: str) -> str:
    return "Basic " + base64.b64encode(text.encode()).decode()


GOOD = {"grant_type": "client_credentials"}
AUTH = {"Authorization": basic("svc+1", "s:cret")}
FORM = "application/x-www-form-urlencoded"


def error_case(
    case_id: str,
    status: int,
    error: str,
    phrase: str,
    *,
    headers: dict[str, str] = AUTH,
    form: dict[str, str] | None = GOOD,
    method: str = "POST",
) -> Any:
    return pytest.param(method, headers, form, status, error, phrase, id=case_id)


def auth_header(value: str) -> dict[str, str]:
    return {"Authorization": value}


TOKEN_ERRORS = [
    error_case(
        "wrong-secret",
        401,
        "invalid_client",
        "authentication failed",
        headers=auth_header(basic("svc+1", "nope")),
    ),
    error_case(
        "unknown-client",
        401,
        "invalid_client",
        "authentication failed",
        headers=auth_header(basic("who", "s:cret")),
    ),
    error_case("no-auth", 401, "invalid_client", "is required", headers={}),
    error_case(
        "post-without-secret",
        401,
        "invalid_client",
        "is required",
        headers={},
        form={**GOOD, "client_id": "svc+1"},
    ),
    error_case(
        "bearer-scheme",
        401,
        "invalid_client",
        "unsupported",
        headers=auth_header("Bearer abc"),
    ),
    error_case(
        "basic-not-base64", 401, "invalid_client", "malformed", headers=auth_header("Basic %%%")
    ),
    error_case(
        "basic-without-colon",
        401,
        "invalid_client",
        "malformed",
        headers=auth_header(_raw_basic("svc")),
    ),
    error_case(
        "basic-not-urlencoded",
        401,
        "invalid_client",
        "authentication failed",
        headers=auth_header(_raw_basic("svc+1:s:cret")),
    ),
    error_case(
        "two-auth-methods",
        400,
        "invalid_request",
        "one client authentication",
        form={**GOOD, "client_secret": "s:cret"},
    ),
    error_case(
        "client-id-mismatch",
        400,
        "invalid_request",
        "differs",
        form={**GOOD, "client_id": "other"},
    ),
    error_case("no-body", 400, "invalid_request", "x-www-form-urlencoded", form=None),
    error_case("no-grant-type", 400, "invalid_request", "grant_type", form={"scope": "a"}),
    error_case(
        "password-grant",
        400,
        "unsupported_grant_type",
        "client_credentials",
        form={"grant_type": "password"},
    ),
    error_case(
        "scope-not-allowed",
        400,
        "invalid_scope",
        "not allowed",
        form={**GOOD, "scope": "a admin"},
    ),
    error_case(
        "scope-malformed", 400, "invalid_scope", "malformed", form={**GOOD, "scope": 'a "b"'}
    ),
    error_case(
        "scope-trailing-newline",
        400,
        "invalid_scope",
        "malformed",
        form={**GOOD, "scope": "a\n"},
    ),
    error_case(
        "audience-not-allowed",
        400,
        "invalid_target",
        "audience",
        form={**GOOD, "audience": "api://other"},
    ),
    error_case("get", 405, "invalid_request", "POST only", method="GET", form=None),
]


@pytest.mark.parametrize(("method", "headers", "form", "status", "error", "phrase"), TOKEN_ERRORS)
def test_token_endpoint_errors(
    fake: FakeIssuer,
    method: str,
    headers: dict[str, str],
    form: dict[str, str] | None,
    status: int,
    error: str,
    phrase: str,
) -> None:
    fake.register_client("svc+1", "s:cret", scopes=("a", "b"), audience="api://svc")
    with fake.client() as client:
        reply = client.request(method, fake.token_endpoint, headers=headers, data=form)
    assert reply.status_code == status
    assert reply.json()["error"] == error
    assert phrase in reply.json()["error_description"]
    assert reply.headers["cache-control"] == "no-store"
    challenge = reply.headers.get("www-authenticate", "")
    assert challenge.startswith("Basic ") == (status == 401)
    assert "s:cret" not in reply.text


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b'{"grant_type": "client_credentials"}', "application/json"),
        (b"grant_type=client_credentials&grant_type=client_credentials", FORM),
        (b"grant_type=client_credentials&x=\xff", FORM),
    ],
    ids=["json-body", "repeated-parameter", "not-utf8"],
)
def test_token_endpoint_refuses_malformed_bodies(
    fake: FakeIssuer, call: Call, content: bytes, content_type: str
) -> None:
    fake.register_client("svc+1", "s:cret")
    headers = {**AUTH, "Content-Type": content_type}
    reply = call("POST", fake.token_endpoint, content=content, headers=headers)
    assert (reply.status_code, reply.json()["error"]) == (400, "invalid_request")


def test_token_endpoint_refuses_two_authorization_headers(fake: FakeIssuer) -> None:
    fake.register_client("svc+1", "s:cret")
    headers = [("Authorization", AUTH["Authorization"])] * 2
    with fake.client() as client:
        reply = client.post(fake.token_endpoint, data=GOOD, headers=headers)
    assert (reply.status_code, reply.json()["error"]) == (400, "invalid_request")


@pytest.mark.parametrize(
    ("args", "options", "error"),
    [
        (("", "secret"), {}, TypeError),
        (("svc", ""), {}, TypeError),
        (("svc", "secret"), {"scopes": ["a b"]}, ValueError),
        (("svc", "secret"), {"audience": []}, ValueError),
        (("svc", "secret"), {"expires_in": -1}, ValueError),
    ],
    ids=["empty-id", "empty-secret", "scope-with-space", "empty-audience", "negative-lifetime"],
)
def test_register_client_refuses_bad_values(
    fake: FakeIssuer, args: tuple[str, str], options: dict[str, Any], error: type
) -> None:
    with pytest.raises(error):
        fake.register_client(*args, **options)


# Counts -----------------------------------------------------------------------------------


def test_counts_every_request_per_endpoint(fake: FakeIssuer, call: Call) -> None:
    fake.fault("status", path="discovery", times=1)
    for url in (fake.discovery_url, fake.discovery_url, fake.oauth_metadata_url, fake.jwks_uri):
        call("GET", url)
    call("POST", fake.token_endpoint, data=GOOD)
    assert fake.counts == {"discovery": 2, "oauth_metadata": 1, "jwks": 1, "token": 1}
    assert fake.jwks_fetches == 1


# Faults -----------------------------------------------------------------------------------


def test_status_fault(fake: FakeIssuer, call: Call) -> None:
    fake.fault("status", status=500)
    reply = call("GET", fake.jwks_uri)
    assert reply.status_code == 500
    assert reply.json()["error"] == "fault_injected"


def test_slow_fault_delays_the_normal_reply(fake: FakeIssuer, call: Call) -> None:
    fake.fault("slow", delay=0.05)
    start = time.perf_counter()
    reply = call("GET", fake.jwks_uri)
    assert time.perf_counter() - start >= 0.05
    assert reply.json() == fake.jwks()


def test_drip_fault_sends_the_normal_body_slowly(fake: FakeIssuer, call: Call) -> None:
    fake.fault("drip", delay=0.0005)
    expected = fake.jwks()
    start = time.perf_counter()
    reply = call("GET", fake.jwks_uri)
    elapsed = time.perf_counter() - start
    assert reply.json() == expected
    assert elapsed >= (len(reply.content) - 1) * 0.0005


def test_drip_fault_streams_one_byte_at_a_time_in_process(fake: FakeIssuer) -> None:
    fake.fault("drip", delay=0)
    with fake.client() as client, client.stream("GET", fake.jwks_uri) as reply:
        chunks = list(reply.iter_raw())
    assert {len(chunk) for chunk in chunks} == {1}
    assert json.loads(b"".join(chunks)) == fake.jwks()


@pytest.mark.parametrize("path", ENDPOINTS)
def test_garbage_fault_is_not_json(fake: FakeIssuer, call: Call, path: str) -> None:
    fake.fault("garbage", path=path)
    url = {
        "discovery": fake.discovery_url,
        "oauth_metadata": fake.oauth_metadata_url,
        "jwks": fake.jwks_uri,
        "token": fake.token_endpoint,
    }[path]
    reply = call("POST" if path == "token" else "GET", url)
    assert reply.status_code == 200
    with pytest.raises((UnicodeDecodeError, json.JSONDecodeError)):
        json.loads(reply.content)


def test_not_object_fault_is_a_json_list(fake: FakeIssuer, call: Call) -> None:
    fake.fault("not_object", path="discovery")
    reply = call("GET", fake.discovery_url)
    assert reply.status_code == 200
    assert reply.json() == [fake.metadata()]


def test_no_keys_fault_is_an_empty_object(fake: FakeIssuer, call: Call) -> None:
    fake.fault("no_keys")
    reply = call("GET", fake.jwks_uri)
    assert (reply.status_code, reply.json()) == (200, {})


def test_oversized_fault_is_valid_json_over_a_mebibyte(fake: FakeIssuer, call: Call) -> None:
    fake.fault("oversized")
    reply = call("GET", fake.jwks_uri)
    assert reply.status_code == 200
    assert len(reply.content) > 1 << 20
    assert reply.json()["keys"] == fake.jwks()["keys"]


def test_gzip_bomb_fault_is_small_on_the_wire(fake: FakeIssuer, call: Call) -> None:
    fake.fault("gzip_bomb")
    reply = call("GET", fake.jwks_uri, raw=True)
    assert reply.status_code == 200
    assert reply.extensions["content-encoding"] == "gzip"
    assert 50 * 1024 < len(reply.content) < 200 * 1024
    assert reply.content[:2] == b"\x1f\x8b"


def test_gzip_bomb_inflates_to_a_hundred_mebibytes(fake: FakeIssuer) -> None:
    fake.fault("gzip_bomb")
    with fake.client() as client, client.stream("GET", fake.jwks_uri) as reply:
        wire = b"".join(reply.iter_raw())
    inflater = zlib.decompressobj(wbits=31)
    total, pending = 0, wire
    for _ in range(10_000):  # bounded: 100 MiB in 1 MiB steps
        total += len(inflater.decompress(pending, 1 << 20))
        pending = inflater.unconsumed_tail
        if not pending:
            break
    assert inflater.eof
    assert total >= 100 << 20


def test_redirect_fault_points_at_the_same_document(fake: FakeIssuer, call: Call) -> None:
    fake.fault("redirect")
    reply = call("GET", fake.jwks_uri)
    assert reply.status_code == 302
    location = reply.headers["location"]
    assert location.endswith("/moved/jwks.json")
    followed = call("GET", location)
    assert (followed.status_code, followed.json()) == (200, fake.jwks())
    assert fake.jwks_fetches == 2


def test_redirect_fault_can_point_anywhere(fake: FakeIssuer) -> None:
    fake.fault("redirect", path="discovery", location="https://evil.test/x")
    with fake.client() as client:
        assert client.get(fake.discovery_url).headers["location"] == "https://evil.test/x"


def test_fault_times_limits_the_hits(fake: FakeIssuer) -> None:
    fake.fault("status", times=2)
    with fake.client() as client:
        statuses = [client.get(fake.jwks_uri).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert fake.jwks_fetches == 3


def test_fault_applies_to_its_path_only(fake: FakeIssuer) -> None:
    fake.fault("status", path="token")
    with fake.client() as client:
        assert client.get(fake.jwks_uri).status_code == 200
        assert client.post(fake.token_endpoint, data=GOOD).status_code == 503


def test_a_new_fault_replaces_the_old_and_clear_faults_removes_all(fake: FakeIssuer) -> None:
    fake.fault("status", status=500)
    fake.fault("no_keys")
    fake.fault("status", path="discovery")
    with fake.client() as client:
        assert client.get(fake.jwks_uri).json() == {}
        fake.clear_faults()
        assert client.get(fake.jwks_uri).json() == fake.jwks()
        assert client.get(fake.discovery_url).status_code == 200


@pytest.mark.parametrize(
    ("kind", "options", "error"),
    [
        ("explode", {}, ValueError),
        ("status", {"path": "userinfo"}, ValueError),
        ("status", {"status": 99}, ValueError),
        ("status", {"status": 600}, ValueError),
        ("status", {"status": "503"}, TypeError),
        ("slow", {"delay": -1}, ValueError),
        ("slow", {"delay": float("inf")}, ValueError),
        ("slow", {"delay": "1"}, TypeError),
        ("status", {"times": 0}, ValueError),
        ("status", {"times": True}, TypeError),
        ("redirect", {"location": ""}, TypeError),
    ],
    ids=[
        "unknown-kind",
        "unknown-path",
        "status-too-low",
        "status-too-high",
        "status-str",
        "negative-delay",
        "infinite-delay",
        "delay-str",
        "zero-times",
        "times-bool",
        "empty-location",
    ],
)
def test_bad_faults_are_refused(
    fake: FakeIssuer, kind: str, options: dict[str, Any], error: type
) -> None:
    with pytest.raises(error):
        fake.fault(kind, **options)


def test_every_fault_kind_is_tested() -> None:
    tested = {
        "status",
        "slow",
        "drip",
        "garbage",
        "not_object",
        "no_keys",
        "oversized",
        "gzip_bomb",
        "redirect",
    }
    assert set(FAULT_KINDS) == tested


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


@pytest.mark.parametrize("port", [-1, 65536, True, "80"])
def test_serve_refuses_bad_ports(fake: FakeIssuer, port: Any) -> None:
    with pytest.raises(ValueError, match="port"):
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


def test_signing_key_is_a_frozen_dataclass() -> None:
    key = generate_key("EdDSA", "k")
    assert isinstance(key, SigningKey)
    with pytest.raises(AttributeError):
        key.kid = "other"  # type: ignore[misc]


# Documentation ------------------------------------------------------------------------------

DOCS = Path(__file__).resolve().parents[1] / "docs" / "testing.md"
DOC_BLOCKS = re.findall(r"^```python\n(.*?)^```", DOCS.read_text(encoding="utf-8"), re.M | re.S)


@pytest.mark.parametrize("source", DOC_BLOCKS, ids=[f"block-{i}" for i in range(len(DOC_BLOCKS))])
def test_docs_examples_run(source: str) -> None:
    """Every Python block of docs/testing.md runs as written."""
    exec(compile(source, str(DOCS), "exec"), {"__name__": "docs_example"})


def test_public_names_are_exported_once_and_importable() -> None:
    import resource_guard.testing as testing

    assert len(set(testing.__all__)) == len(testing.__all__)
    assert all(hasattr(testing, name) for name in testing.__all__)
    public = {
        name
        for name, value in vars(testing).items()
        if name[0].isalpha() and not isinstance(value, types.ModuleType)
    }
    assert public - set(testing.__all__) == set()
