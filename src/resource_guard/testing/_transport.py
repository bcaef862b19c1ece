"""Serve the fake issuer in-process: one httpx transport for sync and async clients."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator

import httpx

from ._http import HTTPReply, HTTPRequest

__all__ = ["FakeIssuerTransport"]


class _Body(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A reply body as the network would deliver it: raw (still compressed, if it is),
    at once or one byte every ``drip`` seconds."""

    def __init__(self, body: bytes, drip: float | None) -> None:
        self._body = body
        self._drip = drip

    def __iter__(self) -> Iterator[bytes]:
        if self._drip is None:
            yield self._body
            return
        drip = self._drip
        for index in range(len(self._body)):
            if index:
                time.sleep(drip)
            yield self._body[index : index + 1]

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._drip is None:
            yield self._body
            return
        drip = self._drip
        for index in range(len(self._body)):
            if index:
                await asyncio.sleep(drip)
            yield self._body[index : index + 1]


class FakeIssuerTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """An httpx transport (sync and async) answering from a fake issuer, without sockets.

    Requests for any origin other than the issuer's fail like an unreachable host
    (:class:`httpx.ConnectError`). ``slow`` faults sleep (``asyncio.sleep`` in async mode)
    and ``drip`` faults stream the body one byte at a time.
    """

    def __init__(
        self, respond: Callable[[HTTPRequest], HTTPReply], origin: Callable[[], str]
    ) -> None:
        self._respond = respond
        self._origin = origin

    def _request(self, request: httpx.Request, body: bytes) -> HTTPRequest:
        origin = httpx.URL(self._origin())
        url = request.url
        if (url.scheme, url.host, url.port) != (origin.scheme, origin.host, origin.port):
            raise httpx.ConnectError(
                f"the FakeIssuer transport serves {origin} only, not {url.scheme}://{url.netloc.decode()}",
                request=request,
            )
        headers = tuple((name.lower(), value) for name, value in request.headers.multi_items())
        return HTTPRequest(request.method, url.path, headers, body)

    @staticmethod
    def _response(reply: HTTPReply) -> httpx.Response:
        headers = list(reply.headers)
        if not any(name == "content-length" for name, _ in headers):
            headers.append(("content-length", str(len(reply.body))))
        return httpx.Response(reply.status, headers=headers, stream=_Body(reply.body, reply.drip))

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        reply = self._respond(self._request(request, request.read()))
        if reply.delay:
            time.sleep(reply.delay)
        return self._response(reply)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        reply = self._respond(self._request(request, await request.aread()))
        if reply.delay:
            await asyncio.sleep(reply.delay)
        return self._response(reply)
