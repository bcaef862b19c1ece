"""The transport-neutral request and reply the fake issuer's endpoints work on.

Both ways of serving (the in-process httpx transport and the loopback HTTP server) turn
their requests into :class:`HTTPRequest`, ask the issuer for an :class:`HTTPReply` and send
it, honouring ``delay`` and ``drip`` in their own way (blocking or asyncio sleeps).

CORS (testing only): a browser page on another origin, such as Swagger UI's Authorize
dialog, may read the issuer's replies. :func:`cors_preflight` answers an ``OPTIONS``
preflight and :func:`with_cors` marks an actual reply; both allow the request's
``Origin`` (or ``*`` without one), which no real identity provider should do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any, Final

__all__ = [
    "CORS_ALLOWED_HEADERS",
    "CORS_MAX_AGE",
    "HTTPReply",
    "HTTPRequest",
    "cors_preflight",
    "json_reply",
    "with_cors",
]

CORS_ALLOWED_HEADERS: Final = "Authorization, Content-Type, X-Requested-With"
"""Request headers a preflight allows: client authentication, the form, and the marker
Swagger UI adds to its token request."""
CORS_MAX_AGE: Final = 600
"""Seconds a browser may cache a preflight's answer."""


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


def _cors_headers(request: HTTPRequest) -> tuple[tuple[str, str], ...]:
    """``Access-Control-Allow-Origin``: the request's one ``Origin``, else ``*``."""
    origins = request.header_values("origin")
    origin = origins[0] if len(origins) == 1 else "*"
    return (("access-control-allow-origin", origin), ("vary", "Origin"))


def cors_preflight(request: HTTPRequest, method: str) -> HTTPReply:
    """The 204 answer to a CORS preflight (``OPTIONS``) for an endpoint serving ``method``."""
    headers = (
        *_cors_headers(request),
        ("access-control-allow-methods", f"{method}, OPTIONS"),
        ("access-control-allow-headers", CORS_ALLOWED_HEADERS),
        ("access-control-max-age", str(CORS_MAX_AGE)),
    )
    return HTTPReply(204, headers, b"")


def with_cors(reply: HTTPReply, request: HTTPRequest) -> HTTPReply:
    """``reply`` with the CORS headers that let a browser page read it."""
    return replace(reply, headers=(*reply.headers, *_cors_headers(request)))
