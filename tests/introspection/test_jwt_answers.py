"""RFC 9701 answers: signed by the issuer, checked like a JWT (key from the JWKS, typ, iss,
aud naming us, iat) before the token_introspection object is judged. An answer that
does not hold is a failure of the endpoint (503), never a verdict on the token."""

from __future__ import annotations

from typing import Any

import httpx
import jwt
import pytest

from resource_guard import InactiveTokenError, IntrospectionUnavailableError
from resource_guard.testing import FakeClock, FakeIssuer
from tests.helpers import ORDERS_AUDIENCE

from .conftest import CLIENT_ID, MakeVerifier


async def test_a_signed_answer_is_verified_and_judged(
    issuer: FakeIssuer, make_verifier: MakeVerifier
) -> None:
    verifier = make_verifier(response_format="jwt")
    token = issuer.issue_opaque("alice", scopes=["orders:read"])
    access = await verifier.verify(token)
    assert access.subject == "alice"
    assert access.scopes == {"orders:read"}
    assert access.key_id is None
    assert issuer.jwks_fetches == 1
    assert verifier.key_source is not None
    with pytest.raises(InactiveTokenError):
        await verifier.verify("unknown")
    assert issuer.jwks_fetches == 1


async def test_auto_uses_signed_answers_when_the_issuer_offers_them(
    issuer: FakeIssuer, make_verifier: MakeVerifier
) -> None:
    verifier = make_verifier(response_format="auto")
    await verifier.verify(issuer.issue_opaque())
    assert verifier.key_source is not None
    issuer.metadata_overrides["introspection_signing_alg_values_supported"] = None
    plain = make_verifier(response_format="auto")
    await plain.verify(issuer.issue_opaque())
    assert plain.key_source is None


async def test_start_fetches_the_keys_for_signed_answers(
    issuer: FakeIssuer, make_verifier: MakeVerifier
) -> None:
    verifier = make_verifier(response_format="jwt", jwks_uri=issuer.jwks_uri)
    await verifier.start()
    assert issuer.jwks_fetches == 1
    await verifier.verify(issuer.issue_opaque())
    assert issuer.jwks_fetches == 1


def set_claims(**members: Any) -> Any:
    def hook(claims: dict[str, Any], header: dict[str, Any]) -> None:
        for name, value in members.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value

    return hook


@pytest.mark.parametrize(
    ("hook", "reason"),
    [
        (lambda claims, header: header.update(typ="JWT"), "typ"),
        (lambda claims, header: header.update(typ="at+jwt"), "typ"),
        (lambda claims, header: header.update(kid="nobody"), "no key"),
        (set_claims(aud="someone-else"), "aud"),
        (set_claims(aud=["someone-else"]), "aud"),
        (set_claims(aud=None), "aud"),
        (set_claims(iss="https://evil.test"), "iss"),
        (set_claims(iat=None), "iat"),
        (set_claims(iat="now"), "iat"),
        (set_claims(iat=1), "iat"),
        (set_claims(token_introspection=None), "token_introspection"),
        (set_claims(token_introspection=[True]), "token_introspection"),
    ],
    ids=[
        "typ-jwt",
        "typ-at-jwt",
        "unknown-kid",
        "aud-other",
        "aud-list-other",
        "aud-missing",
        "iss",
        "iat-missing",
        "iat-string",
        "iat-old",
        "no-object",
        "not-object",
    ],
)
async def test_a_signed_answer_that_does_not_hold_is_a_failure(
    issuer: FakeIssuer, make_verifier: MakeVerifier, hook: Any, reason: str
) -> None:
    issuer.introspection_jwt_hook = hook
    verifier = make_verifier(response_format="jwt", cooldown=0)
    with pytest.raises(IntrospectionUnavailableError, match=reason):
        await verifier.verify(issuer.issue_opaque())


@pytest.mark.parametrize("aud", [["other", CLIENT_ID], ORDERS_AUDIENCE, ["x", ORDERS_AUDIENCE]])
async def test_the_audience_names_this_resource_server(
    issuer: FakeIssuer, make_verifier: MakeVerifier, aud: object
) -> None:
    """RFC 9701 §5: ``aud`` identifies the resource server receiving the answer: servers
    name it by its client id (the default here) or by its resource identifier, one of
    the configured audiences (the RFC's own example); either binds the answer to us."""
    issuer.introspection_jwt_hook = set_claims(aud=aud)
    await make_verifier(response_format="jwt").verify(issuer.issue_opaque())


async def test_an_answer_from_the_future_is_a_failure(
    issuer: FakeIssuer, make_verifier: MakeVerifier, clock: FakeClock
) -> None:
    issuer.introspection_jwt_hook = set_claims(iat=int(clock()) + 120)
    with pytest.raises(IntrospectionUnavailableError, match="iat"):
        await make_verifier(response_format="jwt").verify(issuer.issue_opaque())


async def test_a_bad_signature_is_a_failure(
    issuer: FakeIssuer, make_verifier: MakeVerifier
) -> None:
    forger = issuer.generate_key(kid=issuer.current_key.kid)  # same kid, unpublished key
    issuer.introspection_signing_key = forger
    with pytest.raises(IntrospectionUnavailableError, match="signature"):
        await make_verifier(response_format="jwt").verify(issuer.issue_opaque())


async def test_an_algorithm_outside_the_allow_list_is_a_failure(
    issuer: FakeIssuer, make_verifier: MakeVerifier
) -> None:
    verifier = make_verifier(response_format="jwt", algorithms=["RS256"])
    with pytest.raises(IntrospectionUnavailableError, match="algorithm"):
        await verifier.verify(issuer.issue_opaque())


@pytest.mark.parametrize(
    ("content_type", "body", "reason"),
    [
        ("application/json", b'{"active": true}', "not application/token-introspection"),
        ("application/token-introspection+jwt", b"not a jws", "not a compact JWS"),
        ("application/token-introspection+jwt", b"\xff\xfe", "not a compact JWS"),
    ],
)
async def test_a_signed_answer_must_be_a_jws_of_its_type(
    make_verifier: MakeVerifier, issuer: FakeIssuer, content_type: str, body: bytes, reason: str
) -> None:
    verifier = make_verifier(
        response_format="jwt",
        introspection_endpoint="https://idp.test/introspect",
        jwks_uri="https://idp.test/jwks",
        http_client=httpx.AsyncClient(
            transport=httpx.MockTransport(
                lambda request: httpx.Response(
                    200, headers={"content-type": content_type}, content=body
                )
            )
        ),
    )
    with pytest.raises(IntrospectionUnavailableError, match=reason):
        await verifier.verify("some-token")


async def test_a_signed_payload_that_is_not_json_is_a_failure(
    issuer: FakeIssuer, make_verifier: MakeVerifier
) -> None:
    """Signed by the issuer's own key, but its payload is not a JSON object."""
    key = issuer.current_key
    body = jwt.api_jws.encode(
        b"[1, 2]",
        key.private_key,
        algorithm=key.alg,
        headers={"kid": key.kid, "typ": "token-introspection+jwt"},
    )

    def endpoint(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/jwks":
            return httpx.Response(200, json=issuer.jwks())
        media_type = {"content-type": "application/token-introspection+jwt"}
        return httpx.Response(200, headers=media_type, content=body.encode())

    verifier = make_verifier(
        response_format="jwt",
        introspection_endpoint="https://idp.test/introspect",
        jwks_uri="https://idp.test/jwks",
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(endpoint)),
    )
    with pytest.raises(IntrospectionUnavailableError, match="payload"):
        await verifier.verify("some-token")


async def test_keys_that_cannot_be_had_are_a_failure(
    issuer: FakeIssuer, make_verifier: MakeVerifier
) -> None:
    issuer.fault("status", endpoint="jwks", status=500)
    with pytest.raises(IntrospectionUnavailableError, match="no key"):
        await make_verifier(response_format="jwt").verify(issuer.issue_opaque())


async def test_discovery_without_a_jwks_uri_is_a_failure(
    issuer: FakeIssuer, make_verifier: MakeVerifier
) -> None:
    issuer.metadata_overrides["jwks_uri"] = None
    with pytest.raises(IntrospectionUnavailableError, match="jwks_uri"):
        await make_verifier(response_format="jwt").verify(issuer.issue_opaque())


async def test_discovery_that_fails_is_a_failure(
    issuer: FakeIssuer, make_verifier: MakeVerifier
) -> None:
    issuer.fault("status", endpoint="discovery", status=500)
    issuer.fault("status", endpoint="oauth_metadata", status=500)
    with pytest.raises(IntrospectionUnavailableError, match="discovery failed"):
        await make_verifier().verify(issuer.issue_opaque())
