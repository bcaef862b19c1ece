"""RFC 8707 resource indicators at the fake issuer, then the whole discovery chain over
loopback: 401 challenge -> RFC 9728 metadata -> authorization server metadata (RFC 8414)
-> token for the resource -> 200."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from resource_guard import (
    BearerAuthMiddleware,
    ClientCredentialsAuth,
    ProtectedResourceMetadata,
    TokenVerifier,
)
from resource_guard.dpop import DPoPPolicy
from resource_guard.starlette import require_scopes
from resource_guard.testing import FakeIssuer
from tests.loopback import LoopbackServer

TIMEOUT = 5.0

# -- RFC 8707 at the token endpoint --------------------------------------------------------------


def token_request(fake: FakeIssuer, data: dict[str, Any]) -> httpx.Response:
    """A client-credentials request of client ``svc``; a list value is a repeated field."""
    with fake.client(timeout=TIMEOUT) as http:
        form = {"grant_type": "client_credentials", **data}
        return http.post(fake.token_endpoint, data=form, auth=("svc", "secret"))


def aud(reply: httpx.Response) -> Any:
    assert reply.status_code == 200, reply.text
    return jwt.decode(reply.json()["access_token"], options={"verify_signature": False})["aud"]


def test_a_resource_becomes_the_audience(fake: FakeIssuer) -> None:
    fake.register_client("svc", "secret")
    assert aud(token_request(fake, {"resource": "https://api.test/orders"})) == (
        "https://api.test/orders"
    )


def test_several_resources_become_several_audiences(fake: FakeIssuer) -> None:
    fake.register_client("svc", "secret")
    form = {"resource": ["https://b.test", "urn:example:a", "https://b.test"]}
    assert aud(token_request(fake, form)) == ["https://b.test", "urn:example:a"]


def test_without_a_resource_the_audience_is_as_before(fake: FakeIssuer) -> None:
    fake.register_client("svc", "secret")
    assert aud(token_request(fake, {})) == fake.audience


def test_a_client_s_audiences_are_the_allowlist(fake: FakeIssuer) -> None:
    fake.register_client("svc", "secret", audience=("https://a.test", "https://b.test"))
    assert aud(token_request(fake, {"resource": "https://b.test"})) == "https://b.test"
    refused = token_request(fake, {"resource": "https://c.test"})
    assert refused.status_code == 400
    assert refused.json() == {
        "error": "invalid_target",
        "error_description": "a resource is not allowed for this client",
    }
    mixed = {"resource": ["https://a.test", "https://c.test"]}
    assert token_request(fake, mixed).json()["error"] == "invalid_target"


def test_a_single_allowed_audience_is_an_allowlist_too(fake: FakeIssuer) -> None:
    fake.register_client("svc", "secret", audience="https://a.test")
    assert aud(token_request(fake, {"resource": "https://a.test"})) == "https://a.test"
    assert token_request(fake, {"resource": "https://b.test"}).status_code == 400


@pytest.mark.parametrize(
    "resource",
    ["", "/orders", "orders", "https://api.test/#frag", "https://api.test/a b", "1http://x", ":x"],
    ids=["empty", "relative-path", "bare-word", "fragment", "space", "bad-scheme", "no-scheme"],
)
def test_a_resource_that_is_not_an_absolute_uri_is_an_invalid_target(
    fake: FakeIssuer, resource: str
) -> None:
    fake.register_client("svc", "secret")
    reply = token_request(fake, {"resource": resource})
    assert reply.status_code == 400
    assert reply.json() == {
        "error": "invalid_target",
        "error_description": "a resource must be an absolute URI without a fragment",
    }


def test_resource_and_audience_together_are_refused(fake: FakeIssuer) -> None:
    fake.register_client("svc", "secret")
    reply = token_request(fake, {"resource": "https://a.test", "audience": "https://a.test"})
    assert reply.status_code == 400
    assert reply.json()["error"] == "invalid_request"


def test_the_client_asks_for_resources_with_extra_params(fake: FakeIssuer) -> None:
    fake.register_client("svc", "secret", scopes=("orders:read",))
    auth = ClientCredentialsAuth(
        client_id="svc",
        client_secret="secret",
        token_url=fake.token_endpoint,
        extra_params={"resource": ["https://a.test", "https://b.test"]},
        http_client=fake.client(),
    )
    token = auth.get_token()
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["aud"] == ["https://a.test", "https://b.test"]


# -- the whole chain over loopback ---------------------------------------------------------------


class LateApp:
    """An ASGI app set once the server's URL is known (the resource identifier is that
    URL); answers the lifespan itself and runs ``on_shutdown`` on the server's loop."""

    def __init__(self) -> None:
        self.app: ASGIApp | None = None
        self.on_shutdown: list[Callable[[], Any]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    for close in self.on_shutdown:
                        await close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        assert self.app is not None
        await self.app(scope, receive, send)


@require_scopes("orders:read")
async def orders(request: Request) -> JSONResponse:
    return JSONResponse({"orders": [], "client": request.user.token.client_id})


RESOURCE_METADATA = re.compile(r'resource_metadata="([^"]+)"')


def test_the_whole_discovery_chain() -> None:
    late = LateApp()
    with (
        FakeIssuer(algorithm="ES256").serve() as fake,
        LoopbackServer(late) as base,
        httpx.Client(timeout=TIMEOUT) as http,
    ):
        resource = base + "/api"
        verifier = TokenVerifier(fake.issuer, resource)
        late.on_shutdown.append(verifier.aclose)
        app = Starlette(routes=[Route("/api/orders", orders)])
        app.add_middleware(
            BearerAuthMiddleware,
            verifier=verifier,
            resource_metadata=ProtectedResourceMetadata(resource, route_scopes=True),
        )
        late.app = app
        fake.register_client("svc", "secret", scopes=("orders:read",))

        # 1. No token: 401, and the challenge names the metadata.
        refused = http.get(resource + "/orders")
        assert refused.status_code == 401
        found = RESOURCE_METADATA.search(refused.headers["www-authenticate"])
        assert found is not None
        metadata_url = found.group(1)
        assert metadata_url == base + "/.well-known/oauth-protected-resource/api"

        # 2. The metadata: the resource exactly (RFC 9728 §3.3), and who issues tokens.
        metadata = http.get(metadata_url)
        assert metadata.status_code == 200
        document = metadata.json()
        assert document == {
            "resource": resource,
            "authorization_servers": [fake.issuer],
            "scopes_supported": ["orders:read"],
            "bearer_methods_supported": ["header"],
            "dpop_signing_alg_values_supported": sorted(DPoPPolicy().algorithms),
            "dpop_bound_access_tokens_required": False,  # the default policy: "allowed"
        }

        # 3. The authorization server's metadata (RFC 8414 §3.1), its issuer checked.
        issuer = document["authorization_servers"][0]
        parts = urlsplit(issuer)
        as_url = f"{parts.scheme}://{parts.netloc}/.well-known/oauth-authorization-server"
        server = http.get(as_url + parts.path.rstrip("/")).json()
        assert server["issuer"] == issuer

        # 4. A token for the resource (RFC 8707), with the scope the metadata lists.
        auth = ClientCredentialsAuth(
            client_id="svc",
            client_secret="secret",
            token_url=server["token_endpoint"],
            scopes=document["scopes_supported"],
            extra_params={"resource": resource},
        )
        # 5. The request again: 200.
        allowed = http.get(resource + "/orders", auth=auth)
        assert allowed.status_code == 200, allowed.text
        assert allowed.json() == {"orders": [], "client": "svc"}

        # A token for another audience is refused, still naming the metadata.
        other = fake.mint(audience="https://elsewhere.test")
        wrong = http.get(resource + "/orders", headers={"Authorization": f"Bearer {other}"})
        assert wrong.status_code == 401
        assert f'resource_metadata="{metadata_url}"' in wrong.headers["www-authenticate"]
