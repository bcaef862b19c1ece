"""FakeIssuer and DPoP (RFC 9449 §5, §8): key-bound tokens from the token endpoint, refused
proofs, demanded nonces, bound tokens minted directly, and the pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from resource_guard.dpop import DPoPKey, ProofVerifier
from resource_guard.testing import FakeClock, FakeIssuer, read_unverified
from resource_guard.testing._dpop import TokenEndpointDPoP
from resource_guard.testing._http import HTTPRequest
from resource_guard.testing.pytest_plugin import DPoPAuthFactory
from tests.helpers import START

CLIENT = ("dpop-client", "dpop-secret")
FORM = {"grant_type": "client_credentials"}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def issuer(clock: FakeClock) -> FakeIssuer:
    fake = FakeIssuer(algorithm="ES256", clock=clock)
    fake.register_client(*CLIENT, scopes=("orders:read",))
    return fake


@pytest.fixture
def http(issuer: FakeIssuer) -> Iterator[httpx.Client]:
    with issuer.client() as client:
        yield client


@pytest.fixture(scope="module")
def key() -> DPoPKey:
    return DPoPKey.generate()


def token_request(
    http: httpx.Client, issuer: FakeIssuer, *proofs: str, auth: tuple[str, str] = CLIENT
) -> httpx.Response:
    headers = [("DPoP", proof) for proof in proofs]
    return http.post(issuer.token_endpoint, data=FORM, auth=auth, headers=headers)


def proof_for(issuer: FakeIssuer, key: DPoPKey, clock: FakeClock, **options: Any) -> str:
    return key.proof("POST", issuer.token_endpoint, now=clock(), **options)


def test_a_valid_proof_gets_a_token_bound_to_its_key(
    http: httpx.Client, issuer: FakeIssuer, key: DPoPKey, clock: FakeClock
) -> None:
    reply = token_request(http, issuer, proof_for(issuer, key, clock))
    assert reply.status_code == 200, reply.text
    assert reply.json()["token_type"] == "DPoP"
    assert "dpop-nonce" not in reply.headers
    _, claims = read_unverified(reply.json()["access_token"])
    assert claims["cnf"] == {"jkt": key.thumbprint}
    assert claims["client_id"] == CLIENT[0]


def test_without_a_proof_the_token_is_a_plain_bearer_token(
    http: httpx.Client, issuer: FakeIssuer
) -> None:
    reply = token_request(http, issuer)
    assert reply.json()["token_type"] == "Bearer"
    assert "cnf" not in read_unverified(reply.json()["access_token"])[1]


def test_the_proof_is_checked_against_the_served_token_endpoint(
    issuer: FakeIssuer, key: DPoPKey, clock: FakeClock
) -> None:
    with issuer.serve(), httpx.Client() as http:
        assert issuer.token_endpoint.startswith("http://127.0.0.1:")
        reply = token_request(http, issuer, proof_for(issuer, key, clock))
    assert reply.status_code == 200, reply.text
    assert reply.json()["token_type"] == "DPoP"


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda k, url, now: k.proof("POST", "https://elsewhere.test/token", now=now), "htu"),
        (lambda k, url, now: k.proof("GET", url, now=now), "htm"),
        (lambda k, url, now: k.proof("POST", url, now=now - 3600), "too old"),
        (lambda k, url, now: k.proof("POST", url, now=now + 3600), "future"),
        (lambda k, url, now: "not.a.proof", ""),
        (lambda k, url, now: "", ""),
    ],
    ids=["wrong-htu", "wrong-htm", "old", "future", "garbage", "empty"],
)
def test_a_bad_proof_is_a_400_invalid_dpop_proof(
    http: httpx.Client,
    issuer: FakeIssuer,
    key: DPoPKey,
    clock: FakeClock,
    make: Any,
    reason: str,
) -> None:
    reply = token_request(http, issuer, make(key, issuer.token_endpoint, clock()))
    assert reply.status_code == 400
    assert reply.json()["error"] == "invalid_dpop_proof"
    assert reason in reply.json()["error_description"]
    assert reply.headers["cache-control"] == "no-store"


def test_two_dpop_headers_are_refused(
    http: httpx.Client, issuer: FakeIssuer, key: DPoPKey, clock: FakeClock
) -> None:
    reply = token_request(
        http, issuer, proof_for(issuer, key, clock), proof_for(issuer, key, clock)
    )
    assert reply.status_code == 400
    assert reply.json() == {
        "error": "invalid_dpop_proof",
        "error_description": "more than one DPoP header",
    }


def test_a_replayed_proof_is_refused(
    http: httpx.Client, issuer: FakeIssuer, key: DPoPKey, clock: FakeClock
) -> None:
    proof = proof_for(issuer, key, clock)
    assert token_request(http, issuer, proof).status_code == 200
    again = token_request(http, issuer, proof)
    assert again.status_code == 400
    assert again.json()["error_description"] == "the DPoP proof was used before"


def test_client_authentication_comes_before_the_proof(
    http: httpx.Client, issuer: FakeIssuer, key: DPoPKey
) -> None:
    reply = token_request(http, issuer, "garbage", auth=("dpop-client", "wrong"))
    assert reply.status_code == 401
    assert reply.json()["error"] == "invalid_client"


def test_demanded_nonces_are_announced_then_accepted(
    http: httpx.Client, issuer: FakeIssuer, key: DPoPKey, clock: FakeClock
) -> None:
    issuer.dpop_nonce = True
    assert issuer.dpop_nonce is True
    first = token_request(http, issuer, proof_for(issuer, key, clock))
    assert first.status_code == 400
    assert first.json()["error"] == "use_dpop_nonce"
    nonce = first.headers["dpop-nonce"]
    wrong = token_request(http, issuer, proof_for(issuer, key, clock, nonce="stale"))
    assert wrong.json()["error"] == "use_dpop_nonce"
    reply = token_request(http, issuer, proof_for(issuer, key, clock, nonce=nonce))
    assert reply.status_code == 200, reply.text
    assert reply.headers["dpop-nonce"] == nonce
    clock.advance(400)  # the nonce rotates: the previous one is still taken once more
    later = token_request(http, issuer, proof_for(issuer, key, clock, nonce=nonce))
    assert later.status_code == 200
    assert later.headers["dpop-nonce"] != nonce


def test_a_nonce_is_ignored_when_none_is_demanded(
    http: httpx.Client, issuer: FakeIssuer, key: DPoPKey, clock: FakeClock
) -> None:
    reply = token_request(http, issuer, proof_for(issuer, key, clock, nonce="anything"))
    assert reply.status_code == 200


def test_dpop_nonce_is_an_option_and_must_be_a_bool(clock: FakeClock) -> None:
    assert FakeIssuer(dpop_nonce=True).dpop_nonce is True
    with pytest.raises(TypeError, match="dpop_nonce must be a bool"):
        FakeIssuer(dpop_nonce="yes")  # type: ignore[arg-type]
    fake = FakeIssuer()
    with pytest.raises(TypeError, match="dpop_nonce must be a bool"):
        fake.dpop_nonce = 1  # type: ignore[assignment]


def test_the_metadata_lists_the_proof_algorithms(issuer: FakeIssuer) -> None:
    algorithms = issuer.metadata()["dpop_signing_alg_values_supported"]
    assert "ES256" in algorithms
    assert "EdDSA" in algorithms
    assert not [name for name in algorithms if name.startswith("HS") or name == "none"]


def test_mint_binds_a_token_to_a_key_or_a_thumbprint(issuer: FakeIssuer, key: DPoPKey) -> None:
    assert read_unverified(issuer.mint(dpop_key=key))[1]["cnf"] == {"jkt": key.thumbprint}
    assert read_unverified(issuer.mint(dpop_key="abc"))[1]["cnf"] == {"jkt": "abc"}
    overridden = issuer.mint(dpop_key=key, claims={"cnf": {"jkt": "other"}})
    assert read_unverified(overridden)[1]["cnf"] == {"jkt": "other"}
    with pytest.raises(TypeError, match="dpop_key must be a DPoPKey"):
        issuer.mint(dpop_key=5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="dpop_key must be a DPoPKey"):
        issuer.mint(dpop_key="")


def test_dpop_headers_carry_a_bound_token_and_a_proof_for_the_request(
    issuer: FakeIssuer, key: DPoPKey, clock: FakeClock
) -> None:
    headers = issuer.dpop_headers(key, "GET", "https://api.test/orders?page=2", scopes="a")
    scheme, token = headers["Authorization"].split(" ")
    assert scheme == "DPoP"
    assert read_unverified(token)[1]["cnf"] == {"jkt": key.thumbprint}
    assert read_unverified(token)[1]["scope"] == "a"
    proof = ProofVerifier().verify(
        headers["DPoP"], method="GET", url="https://api.test/orders", access_token=token
    )
    assert proof.jkt == key.thumbprint
    assert proof.nonce is None
    given = issuer.dpop_headers(key, "POST", "https://api.test/x", token="tok", nonce="n1")
    assert given["Authorization"] == "DPoP tok"
    checked = ProofVerifier().verify(
        given["DPoP"], method="POST", url="https://api.test/x", access_token="tok"
    )
    assert checked.nonce == "n1"


def request_with(proof: str) -> HTTPRequest:
    return HTTPRequest("POST", "/token", (("dpop", proof),))


def test_the_table_of_seen_proofs_is_bounded(
    key: DPoPKey, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Expired ids go first; when every id is live, the oldest goes (a testing-only issuer
    prefers forgetting to refusing)."""
    monkeypatch.setattr("resource_guard.testing._dpop.MAX_REMEMBERED_PROOFS", 2)
    endpoint = TokenEndpointDPoP(clock)
    url = "https://idp.test/token"

    def bind(proof: str) -> bool:
        try:
            endpoint.bind(request_with(proof), url)
        except Exception:
            return False
        return True

    old = key.proof("POST", url, now=clock())
    assert bind(old)
    clock.advance(400)  # ``old`` expired
    first, second, third = (key.proof("POST", url, now=clock()) for _ in range(3))
    assert bind(first)
    assert bind(second)  # the expired one made room
    assert bind(third)  # both live: the oldest (first) is forgotten
    assert not bind(third)
    assert not bind(second)
    assert bind(first)


def test_the_dpop_key_fixture_is_a_fresh_es256_key(dpop_key: DPoPKey) -> None:
    assert dpop_key.algorithm == "ES256"


async def test_the_dpop_client_auth_fixture_gets_bound_tokens(
    dpop_client_auth: DPoPAuthFactory, fake_issuer: FakeIssuer, dpop_key: DPoPKey
) -> None:
    auth = dpop_client_auth(scopes=("orders:read",))
    assert auth.dpop_key is dpop_key
    token = await auth.aget_token()
    claims = read_unverified(token)[1]
    assert claims["cnf"] == {"jkt": dpop_key.thumbprint}
    assert claims["scope"] == "orders:read"
    assert claims["iss"] == fake_issuer.issuer
    second = dpop_client_auth()
    assert second.client_id != auth.client_id


def test_the_dpop_client_auth_fixture_reaches_a_served_issuer(
    dpop_client_auth: DPoPAuthFactory, fake_issuer_server: FakeIssuer
) -> None:
    auth = dpop_client_auth(issuer=fake_issuer_server)
    assert read_unverified(auth.get_token())[1]["iss"].startswith("http://127.0.0.1:")
    with pytest.raises(TypeError, match="issuer must be a FakeIssuer"):
        dpop_client_auth(issuer="https://idp.test")  # type: ignore[arg-type]
