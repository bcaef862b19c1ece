"""ProofVerifier: every stateless check of RFC 9449 §4.3, one refused proof per check."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from resource_guard import InvalidDPoPProofError
from resource_guard._jwk import uint_member
from resource_guard.dpop import DPoPKey, DPoPProof, ProofVerifier
from resource_guard.dpop import _proof as proof_module
from resource_guard.dpop._key import DPOP_ALGORITHMS
from resource_guard.dpop._proof import access_token_hash, normalize_htu
from resource_guard.testing import FakeClock
from tests.dpop.proofs import ABSENT, ProofKey, ath, sign
from tests.helpers import START, b64url, compact, segment

URL = "https://api.example.com/orders"
TOKEN = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln"


@pytest.fixture
def key() -> ProofKey:
    return ProofKey(now=START)


@pytest.fixture
def checker(clock: FakeClock) -> ProofVerifier:
    return ProofVerifier(clock=clock)


@pytest.mark.parametrize("alg", ["ES256", "ES384", "EdDSA", "RS256", "PS256"])
def test_a_valid_proof_is_accepted_and_described(checker: ProofVerifier, alg: str) -> None:
    key = ProofKey(alg, now=START)
    proof = key.proof("POST", URL, token=TOKEN, nonce="n-1")
    result = checker.verify(proof, method="POST", url=URL, access_token=TOKEN)
    assert result == DPoPProof(
        jkt=key.jkt,
        jti=result.jti,
        iat=START,
        nonce="n-1",
        htm="POST",
        htu=URL,
        ath=ath(TOKEN),
    )
    assert result.jti.startswith("proof-")


def test_the_same_key_is_remembered_by_its_header(checker: ProofVerifier, key: ProofKey) -> None:
    first = checker.verify(key.proof(), method="GET", url=URL)
    second = checker.verify(key.proof(), method="GET", url=URL)
    assert first.jkt == second.jkt
    assert first.jti != second.jti


def test_the_key_memo_is_bounded(checker: ProofVerifier, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(proof_module, "_KEY_CACHE_SIZE", 2)
    for n, key in enumerate([ProofKey(now=START) for _ in range(3)]):
        checker.verify(key.proof(url=f"{URL}?page={n}"), method="GET", url=URL)
    assert len(checker._keys) == 1  # emptied when full, then the third key
    assert len(checker._urls) == 1  # the URIs too: emptied with the request's and two htu


def test_long_headers_and_uris_are_never_remembered(checker: ProofVerifier, key: ProofKey) -> None:
    padding = "p" * 2100
    proof = key.proof(url=f"{URL}?{padding}", header={"pad": padding})
    assert checker.verify(proof, method="GET", url=URL).jkt == key.jkt
    assert list(checker._urls) == [URL]
    assert checker._keys == {}


def _replace_signature(proof: str, signature: bytes) -> str:
    return proof.rpartition(".")[0] + "." + b64url(signature)


Mutation = Callable[[ProofKey], str]

REFUSED: dict[str, tuple[Mutation, str]] = {
    "not-compact": (lambda k: "abc.def", "not a compact JWS"),
    "four-segments": (lambda k: k.proof() + ".x", "not a compact JWS"),
    "non-json-header": (
        lambda k: f"{b64url(b'not json')}.{segment({})}.{b64url(b'sig')}",
        "header is not valid JSON",
    ),
    "header-array": (lambda k: compact([1], {}), "not a JSON object"),
    "non-ascii": (lambda k: k.proof() + "é", "not a compact JWS"),
    "typ-missing": (lambda k: k.proof(header={"typ": ABSENT}), "'typ'"),
    "typ-jwt": (lambda k: k.proof(header={"typ": "JWT"}), "'typ'"),
    "typ-case": (lambda k: k.proof(header={"typ": "DPoP+JWT"}), "'typ'"),
    "typ-at+jwt": (lambda k: k.proof(header={"typ": "at+jwt"}), "'typ'"),
    "alg-none": (
        lambda k: compact({"typ": "dpop+jwt", "alg": "none", "jwk": k.jwk}, {}),
        "algorithm 'none'",
    ),
    "alg-hs256": (lambda k: k.proof(header={"alg": "HS256"}), "algorithm 'HS256'"),
    "alg-unknown": (lambda k: k.proof(header={"alg": "ES999"}), "is not accepted"),
    "alg-mismatch": (lambda k: k.proof(header={"alg": "RS256"}), "does not fit"),
    "crit": (lambda k: k.proof(header={"crit": ["exp"], "exp": 1}), "critical"),
    "jwk-missing": (lambda k: k.proof(header={"jwk": ABSENT}), "no 'jwk' object"),
    "jwk-string": (lambda k: k.proof(header={"jwk": "{}"}), "no 'jwk' object"),
    "jwk-private": (
        lambda k: k.proof(header={"jwk": {**k.jwk, "d": b64url(b"\x01" * 32)}}),
        "private key material",
    ),
    "jwk-symmetric": (
        lambda k: k.proof(header={"jwk": {"kty": "oct", "k": b64url(b"secret" * 6)}}),
        "symmetric",
    ),
    "jwk-bad-curve": (
        lambda k: k.proof(header={"jwk": {**k.jwk, "crv": "secp256k1"}}),
        "unsupported EC curve",
    ),
    "jwk-off-curve": (
        lambda k: k.proof(header={"jwk": {**k.jwk, "y": k.jwk["x"]}}),
        "not on the curve",
    ),
    "jwk-use-enc": (lambda k: k.proof(header={"jwk": {**k.jwk, "use": "enc"}}), "'use'"),
    "jwk-other-key": (
        lambda k: k.proof(header={"jwk": ProofKey().jwk}),
        "signature does not verify",
    ),
    "bad-signature": (
        lambda k: _replace_signature(k.proof(), b"\x01" * 64),
        "signature does not verify",
    ),
    "signature-not-b64": (lambda k: k.proof()[:-2] + "+/", "not a compact JWS"),
    "payload-not-object": (
        lambda k: _resign(k, b"[1]"),
        "payload is not a JSON object",
    ),
    "jti-missing": (lambda k: k.proof(claims={"jti": ABSENT}), "no 'jti'"),
    "jti-empty": (lambda k: k.proof(claims={"jti": ""}), "no 'jti'"),
    "jti-number": (lambda k: k.proof(claims={"jti": 7}), "no 'jti'"),
    "jti-too-long": (lambda k: k.proof(claims={"jti": "j" * 257}), "longer than 256"),
    "htm-missing": (lambda k: k.proof(claims={"htm": ABSENT}), "'htm'"),
    "htm-other": (lambda k: k.proof("POST"), "'htm'"),
    "htm-lower-case": (lambda k: k.proof("get"), "'htm'"),
    "htu-missing": (lambda k: k.proof(claims={"htu": ABSENT}), "no 'htu'"),
    "htu-number": (lambda k: k.proof(claims={"htu": 1}), "no 'htu'"),
    "htu-other-host": (lambda k: k.proof(url="https://evil.example.com/orders"), "'htu'"),
    "htu-other-scheme": (lambda k: k.proof(url="http://api.example.com/orders"), "'htu'"),
    "htu-other-port": (lambda k: k.proof(url="https://api.example.com:8443/orders"), "'htu'"),
    "htu-other-path": (lambda k: k.proof(url="https://api.example.com/orders/1"), "'htu'"),
    "htu-relative": (lambda k: k.proof(url="/orders"), "'htu'"),
    "htu-userinfo": (lambda k: k.proof(url="https://me@api.example.com/orders"), "'htu'"),
    "htu-bad-port": (lambda k: k.proof(url="https://api.example.com:99999/orders"), "'htu'"),
    "htu-ftp": (lambda k: k.proof(url="ftp://api.example.com/orders"), "'htu'"),
    "iat-missing": (lambda k: k.proof(claims={"iat": ABSENT}), "numeric 'iat'"),
    "iat-string": (lambda k: k.proof(claims={"iat": str(START)}), "numeric 'iat'"),
    "iat-bool": (lambda k: k.proof(claims={"iat": True}), "numeric 'iat'"),
    "iat-too-old": (lambda k: k.proof(claims={"iat": START - 306}), "too old"),
    "iat-future": (lambda k: k.proof(claims={"iat": START + 6}), "in the future"),
    "nonce-number": (lambda k: k.proof(claims={"nonce": 5}), "'nonce' is not a string"),
    "ath-number": (lambda k: k.proof(claims={"ath": 5}), "'ath' is not a string"),
    "too-large": (
        lambda k: k.proof(claims={"pad": "x" * 9000}),
        "larger than this verifier accepts",
    ),
}


def _resign(key: ProofKey, payload: bytes) -> str:
    head = segment({"typ": "dpop+jwt", "alg": key.alg, "jwk": key.jwk})
    signing_input = f"{head}.{b64url(payload)}"
    return f"{signing_input}.{b64url(sign(key.private, key.alg, signing_input.encode()))}"


@pytest.mark.parametrize(("mutation", "reason"), REFUSED.values(), ids=REFUSED.keys())
def test_each_broken_proof_is_refused_with_a_reason(
    checker: ProofVerifier, key: ProofKey, mutation: Mutation, reason: str
) -> None:
    with pytest.raises(InvalidDPoPProofError) as caught:
        checker.verify(mutation(key), method="GET", url=URL)
    assert reason in caught.value.message
    assert caught.value.code == "invalid_dpop_proof"


def test_a_proof_within_the_window_and_leeway_is_accepted(
    checker: ProofVerifier, key: ProofKey
) -> None:
    for iat in (START - 305, START + 5):
        assert checker.verify(key.proof(claims={"iat": iat}), method="GET", url=URL).iat == iat


@pytest.mark.parametrize(
    ("claims", "reason"),
    [({}, "no 'ath'"), ({"ath": ath("another token")}, "'ath' does not match")],
    ids=["missing", "wrong"],
)
def test_ath_is_required_and_checked_with_an_access_token(
    checker: ProofVerifier, key: ProofKey, claims: dict[str, Any], reason: str
) -> None:
    with pytest.raises(InvalidDPoPProofError, match=reason):
        checker.verify(key.proof(claims=claims), method="GET", url=URL, access_token=TOKEN)


def test_without_an_access_token_ath_is_not_required(checker: ProofVerifier, key: ProofKey) -> None:
    assert checker.verify(key.proof(), method="GET", url=URL).ath is None


def test_ath_is_the_base64url_sha256_of_the_token() -> None:
    # RFC 9449 §7.1's example: the token "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU".
    token = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"
    assert access_token_hash(token) == "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"


@pytest.mark.parametrize(
    "htu",
    [
        URL,
        URL + "?page=2",
        URL + "#top",
        "HTTPS://API.Example.COM/orders",
        "https://api.example.com:443/orders",
        "https://api.example.com/./orders",
        "https://api.example.com/x/../orders",
        "https://api.example.com/%6Frders",
        "wss://api.example.com/orders",
    ],
)
def test_htu_is_compared_normalised_without_query_and_fragment(
    checker: ProofVerifier, key: ProofKey, htu: str
) -> None:
    assert checker.verify(key.proof(url=htu), method="GET", url=URL).htu == htu


@pytest.mark.parametrize(
    ("url", "normal"),
    [
        ("http://h", "http://h/"),
        ("http://h:80/a", "http://h/a"),
        ("http://h:8080/a?q#f", "http://h:8080/a"),
        ("https://[::1]:443/a%2fb%7e", "https://[::1]/a%2Fb~"),
        ("https://h/a/b/..", "https://h/a/"),
        ("https://h/a/.", "https://h/a/"),
        ("https://h/../../a", "https://h/a"),
        ("https://h/a/./b/../c", "https://h/a/c"),
        ("ws://h:80/chat", "http://h/chat"),
        ("https://[::1", None),
        ("mailto:x@y", None),
        ("https:///path", None),
    ],
)
def test_htu_normalisation(url: str, normal: str | None) -> None:
    assert normalize_htu(url) == normal


def test_a_request_url_that_is_not_absolute_matches_nothing(
    checker: ProofVerifier, key: ProofKey
) -> None:
    with pytest.raises(InvalidDPoPProofError, match="'htu'"):
        checker.verify(key.proof(url="/orders"), method="GET", url="/orders")


@pytest.mark.parametrize(
    ("n", "e"),
    [((1 << 8200) + 1, 65537), ((1 << 2047) + 1, (1 << 64) + 1)],
    ids=["modulus", "exponent"],
)
def test_a_costly_rsa_key_is_refused_before_its_signature(
    checker: ProofVerifier, n: int, e: int
) -> None:
    jwk = {"kty": "RSA", "n": uint_member(n), "e": uint_member(e)}
    proof = compact({"typ": "dpop+jwt", "alg": "RS256", "jwk": jwk}, {})
    with pytest.raises(InvalidDPoPProofError, match="over 8192 bits"):
        checker.verify(proof, method="GET", url=URL)


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"algorithms": ["none"]}, ValueError),
        ({"algorithms": ["HS256"]}, ValueError),
        ({"algorithms": ["ES999"]}, ValueError),
        ({"algorithms": []}, ValueError),
        ({"algorithms": 5}, TypeError),
        ({"max_age": 0}, ValueError),
        ({"max_age": "300"}, TypeError),
        ({"leeway": 301}, ValueError),
        ({"max_bytes": 100}, ValueError),
        ({"clock": 5}, TypeError),
    ],
)
def test_bad_options_fail_at_construction(options: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        ProofVerifier(**options)


def test_options_are_readable() -> None:
    checker = ProofVerifier(algorithms=["ES256"], max_age=60, leeway=2, max_bytes=4096)
    assert (checker.algorithms, checker.max_age, checker.leeway, checker.max_bytes) == (
        frozenset({"ES256"}),
        60,
        2,
        4096,
    )


@pytest.mark.parametrize("alg", DPOP_ALGORITHMS)
def test_the_client_s_proofs_pass(checker: ProofVerifier, alg: str) -> None:
    """What DPoPKey (the client side) signs, ProofVerifier accepts, for each algorithm."""
    key = DPoPKey.generate(alg)
    proof = key.proof("PUT", URL + "?x=1#y", access_token=TOKEN, nonce="n", now=START)
    checked = checker.verify(proof, method="PUT", url=URL, access_token=TOKEN)
    assert (checked.jkt, checked.nonce, checked.ath) == (key.thumbprint, "n", ath(TOKEN))
