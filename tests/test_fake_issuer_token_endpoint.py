"""FakeIssuer: the client-credentials token endpoint (RFC 6749 §4.4) and its errors."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote_plus

import jwt
import pytest

from resource_guard.testing import FakeIssuer
from tests.fake_issuer_support import FAKE_ISSUER, GOOD, Call, verify
from tests.fake_issuer_support import call as call  # a fixture

pytestmark = FAKE_ISSUER


def basic(client_id: str, secret: str) -> str:
    """An RFC 6749 §2.3.1 Basic header: both parts form-urlencoded before base64."""
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return "Basic " + base64.b64encode(raw).decode()


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
        (("", "secret"), {}, ValueError),
        (("svc", ""), {}, ValueError),
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
