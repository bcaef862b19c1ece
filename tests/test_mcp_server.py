"""examples/mcp_server.py end to end: uvicorn on loopback, the MCP SDK's own client over
streamable HTTP, tokens from the fake issuer served on loopback too."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import httpx2
import pytest
import uvicorn
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from resource_guard import TokenVerifier
from resource_guard.testing import FakeIssuer
from tests.loopback import load_example

TIMEOUT = 10.0
mcp_example = load_example("mcp_server")


class Served:
    """uvicorn serving ``app`` on a socket bound beforehand, so the app can know its own
    URL (the resource identifier) before the server starts; bounded waits."""

    def __init__(self, make_app: Any) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.bind(("127.0.0.1", 0))
        self.base = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        config = uvicorn.Config(make_app(self.base), lifespan="on", log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True
        )

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + TIMEOUT
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self.base

    def __exit__(self, *exc_info: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=TIMEOUT)
        self.socket.close()
        assert not self.thread.is_alive(), "uvicorn did not stop"


@pytest.fixture(scope="module")
def issuer() -> Iterator[FakeIssuer]:
    with FakeIssuer(algorithm="ES256").serve() as fake:
        yield fake


@pytest.fixture(scope="module")
def server(issuer: FakeIssuer) -> Iterator[str]:
    def make(base: str) -> Any:
        resource = base + "/mcp"
        verifier = TokenVerifier(issuer.issuer, resource)
        return mcp_example.create_app(verifier, {"MCP_RESOURCE_URL": resource})

    with Served(make) as base:
        yield base


def token(issuer: FakeIssuer, base: str, *scopes: str, **options: Any) -> str:
    options.setdefault("audience", base + "/mcp")
    return issuer.mint("frank", client_id="desk-app", scopes=scopes, **options)


async def call_tool(url: str, bearer: str | None, seen: list[httpx2.Response] | None = None) -> Any:
    """Call the tool with the SDK's client; ``seen`` collects the HTTP replies it got."""
    headers = {} if bearer is None else {"Authorization": f"Bearer {bearer}"}

    async def record(response: httpx2.Response) -> None:
        if seen is not None:
            seen.append(response)

    async with (
        httpx2.AsyncClient(
            headers=headers, timeout=TIMEOUT, event_hooks={"response": [record]}
        ) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write, read_timeout_seconds=TIMEOUT) as session,
    ):
        await session.initialize()
        return await session.call_tool("list_orders", {})


def run(coroutine: Any) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coroutine, TIMEOUT)

    return asyncio.run(bounded())


def post(base: str, headers: dict[str, str] | None = None) -> httpx.Response:
    """A bare MCP POST (its body never read: authentication answers first)."""
    sent = {"Accept": "application/json, text/event-stream", **(headers or {})}
    return httpx.post(base + "/mcp", json={}, headers=sent, timeout=TIMEOUT)


def test_the_tool_answers_with_the_scope(issuer: FakeIssuer, server: str) -> None:
    result = run(call_tool(server + "/mcp", token(issuer, server, "orders:read")))
    assert result.is_error is False
    assert result.structured_content == {
        "result": [
            {"id": 1, "item": "coffee", "quantity": 2, "client": "desk-app"},
            {"id": 2, "item": "tea", "quantity": 1, "client": "desk-app"},
        ]
    }


def test_without_a_token_401_names_the_metadata(server: str) -> None:
    reply = post(server)
    assert reply.status_code == 401
    challenge = reply.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    assert 'error="invalid_token"' in challenge
    metadata_url = server + "/.well-known/oauth-protected-resource/mcp"
    assert f'resource_metadata="{metadata_url}"' in challenge


def test_the_sdk_client_without_a_token_gets_401_naming_the_metadata(server: str) -> None:
    seen: list[httpx2.Response] = []
    with pytest.raises(ExceptionGroup) as caught:  # the SDK client's task group
        run(call_tool(server + "/mcp", None, seen))
    assert caught.group_contains(MCPError, depth=None)
    assert [response.status_code for response in seen] == [401]
    metadata_url = server + "/.well-known/oauth-protected-resource/mcp"
    assert f'resource_metadata="{metadata_url}"' in seen[0].headers["www-authenticate"]


def test_without_the_scope_403(issuer: FakeIssuer, server: str) -> None:
    reply = post(server, {"Authorization": f"Bearer {token(issuer, server, 'orders:write')}"})
    assert reply.status_code == 403
    assert 'error="insufficient_scope"' in reply.headers["www-authenticate"]
    seen: list[httpx2.Response] = []
    with pytest.raises(ExceptionGroup) as caught:  # the SDK client's task group
        run(call_tool(server + "/mcp", token(issuer, server, "orders:write"), seen))
    assert caught.group_contains(MCPError, depth=None)
    assert [response.status_code for response in seen] == [403]


@pytest.mark.parametrize(
    "options",
    [{"audience": "https://elsewhere.test"}, {"expires_in": -60}],
    ids=["another-audience", "expired"],
)
def test_a_refused_token_gets_401(issuer: FakeIssuer, server: str, options: Any) -> None:
    reply = post(
        server, {"Authorization": f"Bearer {token(issuer, server, 'orders:read', **options)}"}
    )
    assert reply.status_code == 401


def test_the_server_serves_its_rfc_9728_metadata(issuer: FakeIssuer, server: str) -> None:
    reply = httpx.get(server + "/.well-known/oauth-protected-resource/mcp", timeout=TIMEOUT)
    assert reply.status_code == 200
    document = reply.json()
    assert document["resource"] == server + "/mcp"
    assert document["authorization_servers"] == [issuer.issuer]  # exactly, no slash added
    assert document["scopes_supported"] == ["orders:read"]
    assert document["bearer_methods_supported"] == ["header"]


def test_an_identity_provider_outage_is_503(issuer: FakeIssuer) -> None:
    """Keys cannot be had: 503 with Retry-After, never a 401 sending clients for tokens."""

    def make(base: str) -> Any:
        verifier = TokenVerifier(issuer.issuer, base + "/mcp", jwks_uri=base + "/no-keys")
        return mcp_example.create_app(verifier, {"MCP_RESOURCE_URL": base + "/mcp"})

    with Served(make) as base:
        bearer = issuer.mint(audience=base + "/mcp", scopes=("orders:read",))
        reply = post(base, {"Authorization": f"Bearer {bearer}"})
    assert reply.status_code == 503
    assert int(reply.headers["retry-after"]) >= 1
    assert reply.json()["error"] == "temporarily_unavailable"
