"""FakeIssuer: the discovery and RFC 8414 documents, the JWKS endpoint, request counts."""

from __future__ import annotations

import pytest

from resource_guard.testing import SUPPORTED_ALGORITHMS, FakeIssuer
from tests.fake_issuer_support import FAKE_ISSUER, GOOD, Call
from tests.fake_issuer_support import call as call  # a fixture

pytestmark = FAKE_ISSUER

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


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


# Counts -----------------------------------------------------------------------------------


def test_counts_every_request_per_endpoint(fake: FakeIssuer, call: Call) -> None:
    fake.fault("status", endpoint="discovery", times=1)
    for url in (fake.discovery_url, fake.discovery_url, fake.oauth_metadata_url, fake.jwks_uri):
        call("GET", url)
    call("POST", fake.token_endpoint, data=GOOD)
    assert fake.counts == {"discovery": 2, "oauth_metadata": 1, "jwks": 1, "token": 1}
    assert fake.jwks_fetches == 1
