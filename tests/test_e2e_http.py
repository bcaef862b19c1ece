"""End to end over real loopback HTTP: the example apps under uvicorn on 127.0.0.1, the fake
issuer served on 127.0.0.1, and real clients (httpx, websockets) in between."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from resource_guard import TokenVerifier
from resource_guard.testing import FakeIssuer, generate_key
from tests.helpers import bearer
from tests.loopback import LoopbackServer, load_example

pytestmark = pytest.mark.slow

AUDIENCE = "api://orders"


@pytest.fixture(scope="module")
def issuer() -> Iterator[FakeIssuer]:
    with FakeIssuer(audience=AUDIENCE).serve() as fake:
        yield fake


def serve_example(name: str, issuer: FakeIssuer) -> LoopbackServer:
    verifier = TokenVerifier(issuer.issuer, AUDIENCE)  # its own client, real HTTP to the issuer
    return LoopbackServer(load_example(name).create_app(verifier))


@pytest.fixture(scope="module")
def fastapi_url(issuer: FakeIssuer) -> Iterator[str]:
    with serve_example("fastapi_app", issuer) as url:
        yield url


@pytest.fixture(scope="module")
def starlette_url(issuer: FakeIssuer) -> Iterator[str]:
    with serve_example("starlette_app", issuer) as url:
        yield url


def get(url: str, token: str | None = None, **options: Any) -> httpx.Response:
    headers = bearer(token) if token else []
    return httpx.get(url, headers=headers, timeout=5, **options)


def test_keys_are_fetched_at_start_up(issuer: FakeIssuer) -> None:
    before = issuer.counts["jwks"]
    with serve_example("fastapi_app", issuer):
        assert issuer.counts["jwks"] == before + 1  # before any request arrived


def test_health_is_public(fastapi_url: str) -> None:
    assert get(f"{fastapi_url}/health").json() == {"status": "ok"}


def test_no_token_is_401_with_a_bare_challenge(fastapi_url: str) -> None:
    response = get(f"{fastapi_url}/orders")
    assert response.status_code == 401
    bearer_challenge, dpop_challenge = response.headers.get_list("www-authenticate")
    assert bearer_challenge == 'Bearer realm="api"'
    assert dpop_challenge.startswith('DPoP realm="api", algs="ES256 ')
    assert response.json()["error"] == "unauthorized"


def test_forged_token_is_401_invalid_token(fastapi_url: str, issuer: FakeIssuer) -> None:
    forged = issuer.mint(
        scopes=("orders:read",), key=generate_key("RS256"), kid=issuer.current_key.kid
    )
    response = get(f"{fastapi_url}/orders", forged)
    assert response.status_code == 401
    assert response.json() == {
        "error": "invalid_token",
        "error_description": "signature verification failed",
    }
    assert forged not in response.text


def test_expired_token_is_401(fastapi_url: str, issuer: FakeIssuer) -> None:
    response = get(f"{fastapi_url}/orders", issuer.mint_expired(scopes=("orders:read",)))
    assert response.status_code == 401
    assert 'error_description="the token expired"' in response.headers["www-authenticate"]


def test_token_without_the_scope_is_403(fastapi_url: str, issuer: FakeIssuer) -> None:
    response = get(f"{fastapi_url}/orders", issuer.mint(scopes=("orders:write",)))
    assert response.status_code == 403
    assert response.headers["www-authenticate"] == (
        'Bearer realm="api", error="insufficient_scope", '
        'error_description="the token lacks a required scope", scope="orders:read"'
    )


def test_token_with_the_scope_is_200(fastapi_url: str, issuer: FakeIssuer) -> None:
    response = get(f"{fastapi_url}/orders", issuer.mint(scopes=("orders:read",)))
    assert response.status_code == 200
    assert response.json() == []


def test_client_credentials_token_from_the_issuer_works(
    fastapi_url: str, issuer: FakeIssuer
) -> None:
    issuer.register_client("e2e-client", "e2e-secret", scopes=("orders:read",))
    grant = httpx.post(
        issuer.token_endpoint,
        data={"grant_type": "client_credentials"},
        auth=("e2e-client", "e2e-secret"),
        timeout=5,
    )
    response = get(f"{fastapi_url}/orders", grant.json()["access_token"])
    assert response.status_code == 200


def test_two_authorization_headers_are_400(fastapi_url: str, issuer: FakeIssuer) -> None:
    token = issuer.mint(scopes=("orders:read",)).encode()
    headers = [(b"authorization", b"Bearer " + token)] * 2
    response = httpx.get(f"{fastapi_url}/orders", headers=headers, timeout=5)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_header_and_query_token_is_400(fastapi_url: str, issuer: FakeIssuer) -> None:
    token = issuer.mint(scopes=("orders:read",))
    response = get(f"{fastapi_url}/orders", token, params={"access_token": token})
    assert response.status_code == 400


def test_openapi_offers_client_credentials(fastapi_url: str, issuer: FakeIssuer) -> None:
    document = get(f"{fastapi_url}/openapi.json").json()
    flows = document["components"]["securitySchemes"]["bearerAuth"]["flows"]
    assert flows["clientCredentials"]["tokenUrl"] == issuer.token_endpoint


def test_starlette_example_over_http(starlette_url: str, issuer: FakeIssuer) -> None:
    assert get(f"{starlette_url}/orders").status_code == 401
    assert get(f"{starlette_url}/orders", issuer.mint(scopes=("orders:read",))).status_code == 200


async def test_websocket_with_token_and_scope_opens(starlette_url: str, issuer: FakeIssuer) -> None:
    url = starlette_url.replace("http://", "ws://") + "/orders/feed"
    token = issuer.mint(scopes=("orders:read",))
    async with connect(
        url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=5
    ) as ws:
        assert await ws.recv() == '{"orders":0}'


@pytest.mark.parametrize(
    ("scopes", "status", "challenge"),
    [
        (None, 401, 'Bearer realm="api"'),
        ((), 403, 'error="insufficient_scope"'),
    ],
    ids=["no-token", "no-scope"],
)
async def test_websocket_handshake_is_refused_with_the_challenge(
    starlette_url: str,
    issuer: FakeIssuer,
    scopes: tuple[str, ...] | None,
    status: int,
    challenge: str,
) -> None:
    url = starlette_url.replace("http://", "ws://") + "/orders/feed"
    headers = {} if scopes is None else {"Authorization": f"Bearer {issuer.mint(scopes=scopes)}"}
    with pytest.raises(InvalidStatus) as caught:
        async with connect(url, additional_headers=headers, open_timeout=5):
            pass  # pragma: no cover
    response = caught.value.response
    assert response.status_code == status
    assert challenge in response.headers.get_all("www-authenticate")[0]
