"""A scriptable token endpoint and resource server for ClientCredentialsAuth tests.

One ``httpx.MockTransport`` handler plays both parts: ``https://idp.test/token`` issues
``tok-1``, ``tok-2``... (or replies from a script), discovery documents live under
``https://idp.test/.well-known/...``, and every other URL is a resource server that accepts
the tokens in ``accepted`` (all issued tokens unless told otherwise).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import httpx

from resource_guard.client import ClientCredentialsAuth

TOKEN_URL = "https://idp.test/token"
ISSUER = "https://idp.test"
API = "https://api.test/orders"
CLIENT_ID = "orders-worker"
SECRET = "s3cr3t-V@lue+/:x"

Reply = httpx.Response | Callable[[httpx.Request], httpx.Response]


def make_auth(
    server: TokenServer, clock: Callable[[], float], **options: Any
) -> ClientCredentialsAuth:
    """A ClientCredentialsAuth talking to ``server`` (sync and async), no retry delay.

    ``options`` win; passing ``issuer=`` drops the default ``token_url``.
    """
    settings: dict[str, Any] = {
        "token_url": TOKEN_URL,
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
        "clock": clock,
        "retry_backoff": 0.0,
        "http_client": (
            httpx.Client(transport=server.transport()),
            httpx.AsyncClient(transport=server.async_transport()),
        ),
    }
    settings.update(options)
    if "issuer" in options:
        del settings["token_url"]
    return ClientCredentialsAuth(**settings)


def _is_token_endpoint(request: httpx.Request) -> bool:
    return request.url.host == "idp.test" and request.url.path == "/token"


class TokenServer:
    """Counts token requests, resource requests and discovery fetches."""

    def __init__(self, *, expires_in: object = 3600, delay: float = 0.0) -> None:
        self.expires_in = expires_in
        self.delay = delay
        self.script: list[Reply] = []
        self.token_requests: list[httpx.Request] = []
        self.resource_requests: list[httpx.Request] = []
        self.presented: list[str] = []
        self.discovery: dict[str, object] = {}
        self.discovery_requests: list[str] = []
        self.issued: list[str] = []
        self.accepted: set[str] | None = None
        self.resource_delay = 0.0
        self._lock = threading.Lock()

    # -- the handler ------------------------------------------------------------------------

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "idp.test" and "/.well-known/" in request.url.path:
            return self._discovery(request)
        if _is_token_endpoint(request):
            if self.delay:
                time.sleep(self.delay)
            return self._token(request)
        if self.resource_delay:
            time.sleep(self.resource_delay)
        return self._resource(request)

    async def handle_async(self, request: httpx.Request) -> httpx.Response:
        """Async handler: the same, but delays yield to the event loop."""
        if _is_token_endpoint(request) and self.delay:
            await asyncio.sleep(self.delay)
            return self._token(request)
        if request.url.host == "api.test" and self.resource_delay:
            await asyncio.sleep(self.resource_delay)
            return self._resource(request)
        return self(request)

    def _token(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.token_requests.append(request)
            if self.script:
                reply = self.script.pop(0)
                return reply(request) if callable(reply) else reply
            token = f"tok-{len(self.issued) + 1}"
            self.issued.append(token)
        body: dict[str, Any] = {"access_token": token, "token_type": "Bearer"}
        if self.expires_in is not None:
            body["expires_in"] = self.expires_in
        return httpx.Response(200, json=body)

    def _discovery(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.discovery_requests.append(path)
        if path in self.discovery:
            return httpx.Response(200, json=self.discovery[path])
        return httpx.Response(404)

    def _resource(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.resource_requests.append(request)
            header = request.headers.get("Authorization", "")
            self.presented.append(header)
        token = header.removeprefix("Bearer ")
        accepted = set(self.issued) if self.accepted is None else self.accepted
        if header.startswith("Bearer ") and token in accepted:
            return httpx.Response(200, json={"token": token})
        return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})

    # -- reading what happened ---------------------------------------------------------------

    def form(self, index: int = -1) -> dict[str, str]:
        """The form fields of one token request."""
        return dict(parse_qsl(self.token_requests[index].content.decode()))

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    def async_transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle_async)


class StreamingTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """Like a network transport (and unlike MockTransport), consume the request body as a
    stream instead of buffering it, so a generator body cannot be sent twice."""

    def __init__(self, handler: Callable[[httpx.Request], httpx.Response]) -> None:
        self.handler = handler  # a TokenServer, or any other fake server

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        for _ in request.stream:
            pass
        return self.handler(request)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        async for _ in request.stream:
            pass
        return self.handler(request)


def json_reply(status: int, body: object, **headers: str) -> httpx.Response:
    """A reply with a JSON body (anything ``json.dumps`` takes, NaN and Infinity included)."""
    return httpx.Response(
        status,
        content=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **headers},
    )
