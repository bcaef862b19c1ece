"""examples/fastapi_app.py with its RFC 9728 metadata (``ORDERS_RESOURCE_URL``)."""

from __future__ import annotations

import httpx
import pytest

from resource_guard import TokenVerifier
from resource_guard.dpop import DPoPPolicy
from resource_guard.testing import FakeIssuer
from tests.asgi_client import lifespan
from tests.loopback import load_example

RESOURCE = "https://orders.test/v1"
METADATA_PATH = "/.well-known/oauth-protected-resource/v1"
fastapi_example = load_example("fastapi_app")


@pytest.fixture
def resource_verifier(fake: FakeIssuer) -> TokenVerifier:
    return TokenVerifier(fake.issuer, RESOURCE, http_client=fake.async_client())


async def get(app: object, path: str) -> httpx.Response:
    async with (
        lifespan(app),  # type: ignore[arg-type]
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),  # type: ignore[arg-type]
            base_url="https://orders.test",
        ) as http,
    ):
        return await http.get(path)


@pytest.mark.parametrize("source", ["argument", "environment"])
async def test_the_example_serves_its_metadata(
    fake: FakeIssuer,
    resource_verifier: TokenVerifier,
    monkeypatch: pytest.MonkeyPatch,
    source: str,
) -> None:
    if source == "environment":
        monkeypatch.setenv("ORDERS_RESOURCE_URL", RESOURCE)
        app = fastapi_example.create_app(resource_verifier)
    else:
        app = fastapi_example.create_app(resource_verifier, resource_url=RESOURCE)
    reply = await get(app, METADATA_PATH)
    assert reply.status_code == 200
    assert reply.json() == {
        "resource": RESOURCE,
        "authorization_servers": [fake.issuer],
        "scopes_supported": ["orders:read", "orders:write"],
        "bearer_methods_supported": ["header"],
        "resource_name": "Orders",
        "dpop_signing_alg_values_supported": sorted(DPoPPolicy().algorithms),
        "dpop_bound_access_tokens_required": False,  # the default policy: "allowed"
    }
    refused = await get(app, "/orders")
    assert refused.status_code == 401
    named = f'resource_metadata="https://orders.test{METADATA_PATH}"'
    assert named in refused.headers["www-authenticate"]


async def test_without_a_resource_url_no_metadata(verifier: TokenVerifier) -> None:
    app = fastapi_example.create_app(verifier)
    assert (await get(app, "/.well-known/oauth-protected-resource")).status_code == 401
