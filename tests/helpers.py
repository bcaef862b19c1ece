"""Small hand-builders for tests: only what is meant to be malformed is built by hand."""

from __future__ import annotations

import base64
import json
from typing import Any


def b64url(data: bytes) -> str:
    """Unpadded base64url."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def segment(value: Any) -> str:
    """A JSON value as a base64url token segment."""
    return b64url(json.dumps(value).encode())


def compact(header: Any, payload: Any, signature: bytes = b"\x01" * 8) -> str:
    """A compact JWS from JSON-able parts and raw signature bytes (signature not valid)."""
    return f"{segment(header)}.{segment(payload)}.{b64url(signature)}"


ORDERS_AUDIENCE = "api://orders"
"""The audience of the orders API the middleware, FastAPI and example tests protect."""


START = 1_800_000_000.0
"""Where the tests' fake clocks start: a fixed instant, so no test depends on today."""


def bearer(token: str) -> list[tuple[bytes, bytes]]:
    """An ``Authorization: Bearer <token>`` header as raw ASGI pairs (httpx accepts them too)."""
    return [(b"authorization", f"Bearer {token}".encode())]
