"""A tiny raw ASGI client for tests: exact bytes in, every message out, bounded in time.

HTTP requests, WebSocket handshakes (with or without the denial-response extension) and
the lifespan protocol, without a server or Starlette's TestClient; ``scope`` builds the
scope for tests that script receive and send themselves. Every test that calls an ASGI app
by hand goes through here.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp, Message, Scope

TIMEOUT = 5.0


@dataclass
class Result:
    """An HTTP reply (or a WebSocket denial response)."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        """The value of header ``name``; fails if it was sent more than once."""
        values = [value for key, value in self.headers if key == name]
        assert len(values) <= 1, f"{name!r} sent {len(values)} times"
        return values[0] if values else None

    def header_lines(self, name: bytes) -> list[bytes]:
        """Every value of header ``name``, in order (``WWW-Authenticate`` may repeat)."""
        return [value for key, value in self.headers if key == name]

    def json(self) -> Any:
        return json.loads(self.body)


def scope(
    kind: str = "http",
    *,
    path: str = "/orders",
    headers: Sequence[tuple[bytes, bytes]] = (),
    query: bytes = b"",
    method: str = "GET",
    root_path: str = "",
    state: dict[str, Any] | None = None,
) -> Scope:
    """A complete ``http`` or ``websocket`` scope, the path exactly as given (no client
    normalises ``..`` or ``//`` away); for tests that drive receive and send themselves."""
    built: Scope = {
        "type": kind,
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "scheme": "http" if kind == "http" else "ws",
        "path": path,
        "raw_path": path.encode(),
        "root_path": root_path,
        "query_string": query,
        "headers": [(b"host", b"api.test"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    if kind == "http":
        built["method"] = method
    if state is not None:
        built["state"] = dict(state)
    return built


async def call(
    app: ASGIApp,
    *,
    path: str = "/orders",
    headers: Sequence[tuple[bytes, bytes]] = (),
    query: bytes = b"",
    method: str = "GET",
    root_path: str = "",
    state: dict[str, Any] | None = None,
    body: bytes = b"",
    timeout: float = TIMEOUT,
) -> Result:
    """One HTTP request, its ``body`` in a single message."""
    request = scope(
        "http",
        path=path,
        headers=headers,
        query=query,
        method=method,
        root_path=root_path,
        state=state,
    )
    sent: list[Message] = []
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    inbox.put_nowait({"type": "http.request", "body": body, "more_body": False})

    async def send(message: Message) -> None:
        sent.append(message)

    await asyncio.wait_for(app(request, inbox.get, send), timeout=timeout)
    assert sent, "the app sent nothing"
    assert sent[0]["type"] == "http.response.start"
    content = b"".join(message.get("body", b"") for message in sent[1:])
    return Result(sent[0]["status"], list(sent[0].get("headers", [])), content)


@dataclass
class Session:
    """What the app sent during a WebSocket session."""

    messages: list[Message] = field(default_factory=list)

    @property
    def types(self) -> list[str]:
        return [message["type"] for message in self.messages]

    @property
    def accepted(self) -> bool:
        return "websocket.accept" in self.types

    @property
    def close_code(self) -> int | None:
        for message in self.messages:
            if message["type"] == "websocket.close":
                code: int = message.get("code", 1000)
                return code
        return None

    @property
    def denial(self) -> Result | None:
        """The denial response, when the handshake was refused with one."""
        start = [m for m in self.messages if m["type"] == "websocket.http.response.start"]
        if not start:
            return None
        body = b"".join(
            m.get("body", b"") for m in self.messages if m["type"] == "websocket.http.response.body"
        )
        return Result(start[0]["status"], list(start[0]["headers"]), body)

    def texts(self) -> list[Any]:
        return [json.loads(m["text"]) for m in self.messages if m["type"] == "websocket.send"]


async def websocket(
    app: ASGIApp,
    *,
    path: str = "/ws",
    headers: Sequence[tuple[bytes, bytes]] = (),
    denial_extension: bool = True,
) -> Session:
    """A WebSocket handshake; the client disconnects once the app waits for more."""
    handshake = scope("websocket", path=path, headers=headers)
    handshake["subprotocols"] = []
    handshake["extensions"] = {"websocket.http.response": {}} if denial_extension else {}
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    inbox.put_nowait({"type": "websocket.connect"})
    inbox.put_nowait({"type": "websocket.disconnect", "code": 1000})
    session = Session()

    async def send(message: Message) -> None:
        session.messages.append(message)

    await asyncio.wait_for(app(handshake, inbox.get, send), timeout=TIMEOUT)
    return session


@asynccontextmanager
async def lifespan(app: ASGIApp) -> AsyncIterator[dict[str, Any]]:
    """Run the app's start-up, yield its lifespan state, then run its shutdown.

    Raises RuntimeError with the app's message if start-up fails.
    """
    state: dict[str, Any] = {}
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    outbox: asyncio.Queue[Message] = asyncio.Queue()
    started: Scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": state}

    async def run() -> None:
        await app(started, inbox.get, outbox.put)

    task = asyncio.create_task(run())
    await inbox.put({"type": "lifespan.startup"})
    reply = await asyncio.wait_for(outbox.get(), timeout=TIMEOUT)
    if reply["type"] != "lifespan.startup.complete":
        try:
            await asyncio.wait_for(task, timeout=TIMEOUT)
        except Exception as exc:
            raise RuntimeError(f"start-up failed: {exc}") from exc
        raise RuntimeError("start-up failed")  # pragma: no cover
    yield state
    await inbox.put({"type": "lifespan.shutdown"})
    reply = await asyncio.wait_for(outbox.get(), timeout=TIMEOUT)
    await asyncio.wait_for(task, timeout=TIMEOUT)
    assert reply["type"] == "lifespan.shutdown.complete", reply
