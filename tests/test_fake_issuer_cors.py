"""FakeIssuer: CORS for browser pages (testing only), such as Swagger UI's Authorize dialog.

Preflights (``OPTIONS``) on discovery, RFC 8414 metadata, JWKS and token endpoints are
answered 204, neither counted nor faulted; every other reply of those endpoints carries
``Access-Control-Allow-Origin``. tests/e2e/test_swagger_ui.py shows it in a real browser.
"""

from __future__ import annotations

import socket

import httpx
import pytest

from resource_guard.testing import FakeIssuer
from tests.fake_issuer_support import FAKE_ISSUER, GOOD, TLS, Call
from tests.fake_issuer_support import call as call

pytestmark = FAKE_ISSUER

ORIGIN = "http://127.0.0.1:8000"
ENDPOINTS = ("discovery", "oauth_metadata", "jwks", "token")


def url(fake: FakeIssuer, endpoint: str) -> str:
    return {
        "discovery": fake.discovery_url,
        "oauth_metadata": fake.oauth_metadata_url,
        "jwks": fake.jwks_uri,
        "token": fake.token_endpoint,
    }[endpoint]


def preflight_headers(method: str, origin: str = ORIGIN) -> dict[str, str]:
    """What a browser sends before a cross-origin request with non-simple headers."""
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization,content-type,x-requested-with",
    }


# Preflights -----------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_preflight_is_answered_204_with_the_cors_headers(
    fake: FakeIssuer, call: Call, endpoint: str
) -> None:
    method = "POST" if endpoint == "token" else "GET"
    reply = call("OPTIONS", url(fake, endpoint), headers=preflight_headers(method))
    assert reply.status_code == 204
    assert reply.content == b""
    assert reply.headers["access-control-allow-origin"] == ORIGIN
    assert reply.headers["vary"] == "Origin"
    assert reply.headers["access-control-allow-methods"] == f"{method}, OPTIONS"
    allowed = {
        name.strip().lower() for name in reply.headers["access-control-allow-headers"].split(",")
    }
    assert {"authorization", "content-type", "x-requested-with"} <= allowed
    assert reply.headers["access-control-max-age"] == "600"
    assert sum(fake.counts.values()) == 0  # preflights are not requests to the endpoint


def test_preflight_without_an_origin_allows_any(fake: FakeIssuer, call: Call) -> None:
    reply = call("OPTIONS", fake.token_endpoint)
    assert reply.status_code == 204
    assert reply.headers["access-control-allow-origin"] == "*"


def test_two_origins_allow_any_rather_than_pick_one(fake: FakeIssuer) -> None:
    headers = [("origin", ORIGIN), ("origin", "http://evil.test")]
    with fake.client() as client:
        reply = client.options(fake.jwks_uri, headers=headers)
    assert reply.headers["access-control-allow-origin"] == "*"


def test_preflight_is_never_faulted(fake: FakeIssuer, call: Call) -> None:
    fake.fault("status", endpoint="token", status=503)
    preflight = call("OPTIONS", fake.token_endpoint, headers=preflight_headers("POST"))
    assert preflight.status_code == 204
    faulted = call("POST", fake.token_endpoint, data=GOOD, headers={"Origin": ORIGIN})
    assert faulted.status_code == 503
    assert faulted.headers["access-control-allow-origin"] == ORIGIN  # the page sees the 503
    assert fake.counts["token"] == 1


def test_unknown_path_gets_no_cors(fake: FakeIssuer, call: Call) -> None:
    reply = call("OPTIONS", fake.issuer + "/nope", headers=preflight_headers("GET"))
    assert reply.status_code == 404
    assert "access-control-allow-origin" not in reply.headers


def test_loopback_preflight_has_no_content_length(fake: FakeIssuer) -> None:
    """RFC 9110 §8.6: no Content-Length on a 204; the connection stays usable."""
    with fake.serve():
        assert fake.port is not None
        with socket.create_connection(("127.0.0.1", fake.port), timeout=5) as sock:
            request = (
                f"OPTIONS /token HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: {ORIGIN}\r\n"
                "Access-Control-Request-Method: POST\r\n\r\n"
                "GET /jwks.json HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
            )
            sock.sendall(request.encode())
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
    preflight, _, rest = received.partition(b"\r\n\r\n")
    assert preflight.startswith(b"HTTP/1.1 204 ")
    assert b"content-length" not in preflight.lower()
    assert rest.startswith(b"HTTP/1.1 200 ")  # the next reply follows at once: no body between


# Actual replies -------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["discovery", "oauth_metadata", "jwks"])
def test_documents_carry_the_page_origin(fake: FakeIssuer, call: Call, endpoint: str) -> None:
    reply = call("GET", url(fake, endpoint), headers={"Origin": ORIGIN})
    assert reply.status_code == 200
    assert reply.headers["access-control-allow-origin"] == ORIGIN
    assert reply.headers["vary"] == "Origin"
    assert fake.counts[endpoint] == 1


def test_a_token_reply_carries_the_page_origin(fake: FakeIssuer, call: Call) -> None:
    fake.register_client("swagger", "swagger-secret", scopes=("orders:read",))
    reply = call(
        "POST",
        fake.token_endpoint,
        data=GOOD,
        auth=("swagger", "swagger-secret"),
        headers={"Origin": ORIGIN, "X-Requested-With": "XMLHttpRequest"},
    )
    assert reply.status_code == 200
    assert reply.json()["token_type"] == "Bearer"
    assert reply.headers["access-control-allow-origin"] == ORIGIN
    assert reply.headers["cache-control"] == "no-store"


def test_a_token_error_carries_cors_too(fake: FakeIssuer, call: Call) -> None:
    """The page can show why the Authorize dialog failed."""
    reply = call("POST", fake.token_endpoint, data=GOOD, auth=("nobody", "wrong"))
    assert reply.status_code == 401
    assert reply.json()["error"] == "invalid_client"
    assert reply.headers["access-control-allow-origin"] == "*"


def test_a_browser_style_exchange_over_loopback(fake: FakeIssuer) -> None:
    """Preflight, then the token request, then the JWKS: what a page on another origin does."""
    fake.register_client("swagger", "swagger-secret")
    with fake.serve(), httpx.Client(verify=TLS, timeout=5) as client:
        preflight = client.options(fake.token_endpoint, headers=preflight_headers("POST"))
        token = client.post(
            fake.token_endpoint,
            data=GOOD,
            auth=("swagger", "swagger-secret"),
            headers={"Origin": ORIGIN},
        )
        keys = client.get(fake.jwks_uri, headers={"Origin": ORIGIN})
    assert preflight.status_code == 204
    assert token.status_code == 200
    assert token.headers["access-control-allow-origin"] == ORIGIN
    assert keys.headers["access-control-allow-origin"] == ORIGIN
    assert fake.counts == {"token": 1, "jwks": 1}
