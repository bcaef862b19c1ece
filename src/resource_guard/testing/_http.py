"""The transport-neutral request and reply the fake issuer's endpoints work on.

Both ways of serving (the in-process httpx transport and the loopback HTTP server) turn
their requests into :class:`HTTPRequest`, ask the issuer for an :class:`HTTPReply` and send
it, honouring ``delay`` and ``drip`` in their own way (blocking or asyncio sleeps).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = ["HTTPReply", "HTTPRequest", "json_reply"]


@dataclass(frozen=True, slots=True)
class HTTPRequest:
    """One request: method, path (no query), header pairs (lower-case names), body."""

    method: str
    path: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""

    def header_values(self, name: str) -> list[str]:
        """Every value of header ``name`` (case-insensitive), in order."""
        wanted = name.lower()
        return [value for key, value in self.headers if key == wanted]


@dataclass(frozen=True, slots=True)
class HTTPReply:
    """One reply. ``delay``: seconds to wait before answering; ``drip``: seconds between
    the body's bytes (None sends the body at once)."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    delay: float = 0.0
    drip: float | None = None


def json_reply(status: int, document: Any, *headers: tuple[str, str]) -> HTTPReply:
    """A JSON reply with ``Content-Type: application/json`` and any extra headers."""
    body = json.dumps(document, separators=(",", ":")).encode()
    return HTTPReply(status, (("content-type", "application/json"), *headers), body)
