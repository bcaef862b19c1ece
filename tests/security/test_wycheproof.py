"""Wycheproof JSON Web Signature, Key and Encryption vectors against our verification path.

The vectors are read in place from ``../shared/vectors/wycheproof`` (beside the repository);
without that folder these tests are skipped. They carry no JWT claims (payloads such as
"foo"), so the signature vectors run through :func:`signature_layer`: our parser's header
checks, canonical base64url, the algorithm allow-list, the JWKS key rules and the signature,
everything ``TokenVerifier.verify`` does before it reads claims. Every vector also goes
through the whole stack over HTTP, where none may ever be served.

Where Wycheproof calls a vector valid and our policy refuses it, :data:`POLICY` says why
(HMAC, an unregistered or mismatched JWK ``alg``, a character outside base64url); some of
those vectors are mislabelled upstream, as the vectors' README notes.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from resource_guard import MalformedTokenError, TokenVerifier
from resource_guard._b64 import b64url_decode
from resource_guard._jws import TokenParser
from resource_guard._keyset import KeySet, UnusableKeyError, load_key
from resource_guard.exceptions import UnknownKeyError
from resource_guard.testing import generate_key

from ._harness import AUDIENCE, Guarded, Keys, assert_refused, request_secrets

REPOSITORY = Path(__file__).resolve().parents[2]
VECTORS = REPOSITORY.parent / "shared" / "vectors" / "wycheproof"
MISSING = f"Wycheproof vectors not found in {VECTORS} (they live beside the repository)"
ISSUER = "https://issuer.example.test"
ALLOWED = TokenVerifier(ISSUER, AUDIENCE).algorithms
PARSER = TokenParser(max_length=16 * 1024)
B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

ACCEPTED = "accepted"
MALFORMED = "malformed"
ALGORITHM = "algorithm not allowed"
UNKNOWN_KEY = "no published key fits"
SIGNATURE = "bad signature"

# Vectors Wycheproof calls valid that we refuse, with the reason; each also names the
# step of signature_layer() that refuses it.
MISMATCHED_ALG = "the JWK's alg PS256 differs from the token's PS384 (RFC 7517 §4.4)"
UNREGISTERED_ALG = "the JWK's alg 'ES521' is no JWA algorithm (ES512 is meant)"
NOT_BASE64URL = "'?' is not a base64url character (RFC 7515 §2)"
POLICY: dict[int, tuple[str, str]] = {
    346: (UNKNOWN_KEY, MISMATCHED_ALG),  # mislabelled upstream
    350: (UNKNOWN_KEY, MISMATCHED_ALG),  # mislabelled upstream
    347: (UNKNOWN_KEY, UNREGISTERED_ALG),  # mislabelled upstream
    351: (UNKNOWN_KEY, UNREGISTERED_ALG),  # mislabelled upstream
    372: (MALFORMED, NOT_BASE64URL),  # mislabelled upstream
    373: (MALFORMED, NOT_BASE64URL),  # mislabelled upstream
}
HMAC = "HMAC is never accepted: JWKS keys are public (RFC 8725 §3.1, §3.2)"
# How each reason reads in a test id.
SHORT = {
    MISMATCHED_ALG: "jwk-alg-differs-mislabelled-upstream",
    UNREGISTERED_ALG: "jwk-alg-not-jwa-mislabelled-upstream",
    NOT_BASE64URL: "not-base64url-mislabelled-upstream",
    HMAC: "hmac-never-accepted",
}
# Labelled invalid, yet byte for byte the same as the valid tcId 357 (HS256: refused anyway).
SAME_AS_VALID_357 = {367, 370}


def load(name: str) -> dict[str, Any] | None:
    path = VECTORS / name
    if not path.is_file():
        return None
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return document


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:48]


def _header_alg(jws: object) -> object:
    try:
        assert isinstance(jws, str)
        segment = jws.split(".")[0]
        return json.loads(b64url_decode(segment)).get("alg")
    except (AssertionError, ValueError, AttributeError):
        return None


# -- the signature layer ----------------------------------------------------------------


def keyset(*jwks: Any) -> KeySet:
    """Our JWKS rules: one key at a time, unusable ones left out."""
    return KeySet.from_jwks({"keys": [jwk for jwk in jwks if jwk is not None]})


def signature_layer(jws: object, keys: KeySet) -> str:
    """What our verification path decides before it reads any claim: ``accepted`` or the
    step that refused. Any payload bytes are fine here (the vectors carry none as JSON)."""
    if not isinstance(jws, str) or jws.count(".") != 2:
        return MALFORMED
    header_segment, payload_segment, signature_segment = jws.split(".")
    try:
        header = PARSER.header(header_segment)
        b64url_decode(payload_segment)
        signature = b64url_decode(signature_segment)
    except (MalformedTokenError, ValueError):
        return MALFORMED
    if header.alg not in ALLOWED:
        return ALGORITHM
    try:
        key = keys.select(header.kid, header.alg)
    except UnknownKeyError:
        return UNKNOWN_KEY
    signing_input = f"{header_segment}.{payload_segment}".encode("ascii")
    return ACCEPTED if key.verify(header.alg, signing_input, signature) else SIGNATURE


# -- JSON Web Signature vectors ---------------------------------------------------------


@dataclass(frozen=True)
class Vector:
    tc_id: int
    token: Any
    result: str
    public: Any
    expected: str  # ACCEPTED or the refusing step
    why: str | None  # for a valid vector we refuse: the reason


def _expectation(test: dict[str, Any], group: dict[str, Any]) -> tuple[str, str | None]:
    tc_id = test["tcId"]
    if tc_id in POLICY:
        return POLICY[tc_id]
    if test["result"] != "valid":
        return "refused", None
    alg = _header_alg(test["jws"])
    if isinstance(alg, str) and alg.startswith("HS"):
        return ALGORITHM, HMAC
    return ACCEPTED, None


def jws_vectors() -> Iterator[Any]:
    data = load("json_web_signature_test.json")
    if data is None:
        yield pytest.param(None, marks=pytest.mark.skip(reason=MISSING), id="vectors-missing")
        return
    for group in data["testGroups"]:
        for test in group["tests"]:
            expected, why = _expectation(test, group)
            vector = Vector(
                test["tcId"], test["jws"], test["result"], group.get("public"), expected, why
            )
            name = f"tc{test['tcId']}-{group['comment']}-{_slug(test['comment'])}-{test['result']}"
            if why is not None:
                name += "-refused-" + SHORT[why]
            if test["tcId"] in SAME_AS_VALID_357:
                name += "-same-bytes-as-valid-357"
            yield pytest.param(vector, id=name)


JWS_VECTORS = list(jws_vectors())


@pytest.mark.parametrize("vector", JWS_VECTORS)
def test_jws_vector_at_the_signature_layer(vector: Vector) -> None:
    """Valid vectors verify, invalid ones are refused, policy refusals for the stated step."""
    outcome = signature_layer(vector.token, keyset(vector.public))
    if vector.expected == "refused":
        assert outcome != ACCEPTED
    else:
        assert outcome == vector.expected


@pytest.mark.parametrize("tc_id", sorted(SAME_AS_VALID_357))
def test_vectors_labelled_invalid_are_the_valid_vector_357(tc_id: int) -> None:
    """Upstream mislabels these (same bytes as 357); both are HS256, which we refuse."""
    by_id = {param.values[0].tc_id: param.values[0] for param in JWS_VECTORS if param.values[0]}
    if not by_id:
        pytest.skip(MISSING)
    assert by_id[tc_id].token == by_id[357].token
    assert signature_layer(by_id[tc_id].token, keyset()) == ALGORITHM


def test_empty_payload_vectors_verify_but_are_no_access_token() -> None:
    """RFC 7515 allows an empty payload and the signature layer agrees; a JWT access
    token's payload is a JSON object, so the whole verifier refuses them."""
    empty = [
        p.values[0]
        for p in JWS_VECTORS
        if p.values[0] and isinstance(p.values[0].token, str) and ".." in p.values[0].token
    ]
    if not empty:
        pytest.skip(MISSING)
    valid = [vector for vector in empty if vector.result == "valid"]
    assert len(valid) >= 6
    for vector in valid:
        assert signature_layer(vector.token, keyset(vector.public)) == ACCEPTED
        with pytest.raises(MalformedTokenError):
            PARSER.parse(vector.token)


def _jwks_client(*jwks: Any) -> httpx.AsyncClient:
    document = {"keys": [jwk for jwk in jwks if jwk is not None]}
    return httpx.AsyncClient(
        transport=httpx.MockTransport(lambda request: httpx.Response(200, json=document))
    )


@pytest.fixture
async def http_client_factory() -> AsyncIterator[list[httpx.AsyncClient]]:
    clients: list[httpx.AsyncClient] = []
    yield clients
    for client in clients:
        await client.aclose()


async def _send_over_http(token: Any, jwks: list[Any], clients: list[httpx.AsyncClient]) -> None:
    """The whole stack: middleware, verifier, the vector's key as the JWKS. Never served."""
    client = _jwks_client(*jwks)
    clients.append(client)
    verifier = TokenVerifier(ISSUER, AUDIENCE, jwks_uri=ISSUER + "/jwks", http_client=client)
    app = Guarded(verifier)
    try:
        text = token if isinstance(token, str) else json.dumps(token)
        if not B64TOKEN.fullmatch(text):  # JSON serialization: not a bearer token at all
            seen = await app.send(text.replace("\n", ""))
            assert_refused(seen, 400, "invalid_request", fetches=None)
            return
        seen = await app.send(text)
        usable = len(keyset(*jwks)) > 0
        if seen.status == 503:  # the key source had nothing usable: cannot verify
            assert not usable
            assert_refused(seen, 503, None, fetches=None)
        else:
            assert_refused(seen, 401, "invalid_token", fetches=None, secrets=request_secrets(text))
    finally:
        await app.aclose()
        await verifier.aclose()


@pytest.mark.parametrize("vector", JWS_VECTORS)
async def test_jws_vector_is_never_served(
    vector: Vector, http_client_factory: list[httpx.AsyncClient]
) -> None:
    await _send_over_http(vector.token, [vector.public], http_client_factory)


# -- JSON Web Key vectors ---------------------------------------------------------------


@dataclass(frozen=True)
class KeyVector:
    tc_id: int
    token: str
    result: str
    keys: list[Any]  # the public key set if given, else the private one
    every_jwk: list[Any]


def jwk_vectors() -> Iterator[Any]:
    data = load("json_web_key_test.json")
    if data is None:
        yield pytest.param(None, marks=pytest.mark.skip(reason=MISSING), id="vectors-missing")
        return
    for group in data["testGroups"]:
        public = group.get("public", {}).get("keys")
        private = group.get("private", {}).get("keys", [])
        for test in group["tests"]:
            vector = KeyVector(
                test["tcId"],
                test["jws"],
                test["result"],
                public if public is not None else private,
                [*(public or []), *private],
            )
            alg = _header_alg(test["jws"])
            name = f"tc{test['tcId']}-{group['comment']}-{_slug(test['comment'])}-{test['result']}"
            if test["result"] == "valid" and isinstance(alg, str) and alg.startswith("HS"):
                name += "-refused-" + SHORT[HMAC]
            yield pytest.param(vector, id=name)


JWK_VECTORS = list(jwk_vectors())


@pytest.mark.parametrize("vector", JWK_VECTORS)
def test_jwk_vector(vector: KeyVector) -> None:
    """Private and symmetric keys never load; the token verifies only when valid, asymmetric
    and its key passes every JWKS rule (size, exponent, use, curve, alg, ROCA...)."""
    for jwk in vector.every_jwk:
        if PRIVATE_MEMBERS.intersection(jwk) or jwk.get("kty") == "oct":
            with pytest.raises(UnusableKeyError):
                load_key(jwk)
    outcome = signature_layer(vector.token, keyset(*vector.keys))
    alg = _header_alg(vector.token)
    if vector.result == "valid" and not (isinstance(alg, str) and alg.startswith("HS")):
        assert outcome == ACCEPTED
    else:
        assert outcome != ACCEPTED


@pytest.mark.parametrize("vector", JWK_VECTORS)
async def test_jwk_vector_is_never_served(
    vector: KeyVector, http_client_factory: list[httpx.AsyncClient]
) -> None:
    await _send_over_http(vector.token, vector.keys, http_client_factory)


def _roca_key() -> dict[str, Any]:
    data = load("json_web_key_test.json")
    if data is None:
        pytest.skip(MISSING)
    for group in data["testGroups"]:
        if group["comment"] == "jws_rsa_roca_key":
            jwk: dict[str, Any] = group["public"]["keys"][0]
            return jwk
    raise AssertionError("the ROCA vector is gone")  # pragma: no cover


def test_a_roca_vulnerable_key_is_refused() -> None:
    """CVE-2017-15361: keys from the flawed Infineon generator can be factored."""
    with pytest.raises(UnusableKeyError, match="ROCA"):
        load_key(_roca_key())


def test_ordinary_rsa_keys_are_not_mistaken_for_roca_keys(keys: Keys) -> None:
    for key in (keys.rsa, keys.rsa2, keys.rogue_rsa, generate_key("PS256", key_size=3072)):
        assert load_key(key.public_jwk()).kty == "RSA"


# -- JSON Web Encryption vectors --------------------------------------------------------


def jwe_vectors() -> Iterator[Any]:
    data = load("json_web_encryption_test.json")
    if data is None:
        yield pytest.param(None, marks=pytest.mark.skip(reason=MISSING), id="vectors-missing")
        return
    for group in data["testGroups"]:
        for test in group["tests"]:
            name = f"tc{test['tcId']}-{group['comment']}-{_slug(test['comment'])}-{test['result']}"
            yield pytest.param(test["jwe"], id=name)


@pytest.mark.parametrize("token", list(jwe_vectors()))
async def test_jwe_vector_is_malformed_for_the_verifier(
    token: Any, http_client_factory: list[httpx.AsyncClient]
) -> None:
    """A JWE (valid or not) is no JWS: refused as malformed before any key is needed."""
    verifier = TokenVerifier(
        ISSUER, AUDIENCE, jwks_uri=ISSUER + "/jwks", http_client=_jwks_client()
    )
    with pytest.raises(MalformedTokenError):
        await verifier.verify(token)
    assert verifier.key_source.fetch_count == 0
    await verifier.aclose()
    await _send_over_http(token, [], http_client_factory)
