"""Fault injection: make one endpoint of the fake issuer misbehave on purpose."""

from __future__ import annotations

import functools
import json
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace

from ._checks import finite_seconds, integer, non_empty_str, one_of
from ._http import HTTPReply, json_reply

__all__ = ["ENDPOINTS", "FAULT_KINDS", "Fault", "gzip_bomb"]

ENDPOINTS: tuple[str, ...] = (
    "discovery",
    "oauth_metadata",
    "jwks",
    "token",
    "introspection",
    "revocation",
)
"""Names of the endpoints a fault can target (also the keys of ``FakeIssuer.counts``)."""

FAULT_KINDS: tuple[str, ...] = (
    "status",
    "slow",
    "drip",
    "garbage",
    "not_object",
    "no_keys",
    "oversized",
    "gzip_bomb",
    "redirect",
    "active_string",
)
"""Every kind of fault :meth:`FakeIssuer.fault` accepts."""

OVERSIZED_PADDING = 1 << 20
"""Bytes of padding an ``oversized`` fault adds to the normal JSON document."""

GZIP_BOMB_SIZE = 100 << 20
"""Bytes a ``gzip_bomb`` body inflates to."""

_GARBAGE = b"<html>\x00\xff\xfe not JSON {{{"


@functools.cache
def gzip_bomb() -> bytes:
    """A gzip member (~100 KiB) that inflates to ~100 MiB of valid JSON (whitespace).

    Built from one compressed 1 MiB block repeated: each block is compressed by a fresh
    compressor and ends in a full flush, so blocks neither reference each other nor need
    to be compressed more than once.
    """
    chunk = b" " * (1 << 20)
    head, tail = b'{"keys":[', b"]}"

    def deflate(data: bytes, mode: int) -> bytes:
        compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        return compressor.compress(data) + compressor.flush(mode)

    block = deflate(chunk, zlib.Z_FULL_FLUSH)
    count = GZIP_BOMB_SIZE // len(chunk)
    crc = zlib.crc32(head)
    for _ in range(count):
        crc = zlib.crc32(chunk, crc)
    crc = zlib.crc32(tail, crc)
    size = len(head) + count * len(chunk) + len(tail)
    return b"".join(
        (
            b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff",  # gzip header: deflate, no name/time
            deflate(head, zlib.Z_FULL_FLUSH),
            block * count,
            deflate(tail, zlib.Z_FINISH),
            struct.pack("<II", crc, size & 0xFFFFFFFF),
        )
    )


@dataclass(slots=True)
class Fault:
    """One injected fault. ``times``: how many requests it still hits (None: all)."""

    kind: str
    status: int = 503
    delay: float = 1.0
    times: int | None = None
    location: str | None = None

    def __post_init__(self) -> None:
        one_of("kind", self.kind, FAULT_KINDS, unknown="unknown fault kind")
        integer("status", self.status, 200, 599)
        if finite_seconds("delay", self.delay) < 0:
            raise ValueError(f"delay must be a number of seconds >= 0, got {self.delay}")
        if self.times is not None:
            integer("times", self.times, 1)
        if self.location is not None:
            non_empty_str("location (or None)", self.location)

    def take(self) -> bool:
        """Count one hit; True when the fault is used up and must be removed."""
        if self.times is None:
            return False
        self.times -= 1
        return self.times <= 0

    def apply(self, normal: Callable[[], HTTPReply], moved_url: str) -> HTTPReply:
        """The faulty reply; ``normal`` builds the reply the endpoint would have sent."""
        kind = self.kind
        if kind == "status":
            description = f"status {self.status} injected by FakeIssuer"
            return json_reply(
                self.status, {"error": "fault_injected", "error_description": description}
            )
        if kind == "slow":
            return replace(normal(), delay=float(self.delay))
        if kind == "drip":
            return replace(normal(), drip=float(self.delay))
        if kind == "garbage":
            return HTTPReply(200, (("content-type", "application/json"),), _GARBAGE)
        if kind == "active_string":  # an introspection answer saying "true", not true
            answer = json.loads(normal().body)
            return json_reply(200, {**answer, "active": "true"})
        if kind == "no_keys":
            return json_reply(200, {})
        if kind == "gzip_bomb":
            headers = (("content-type", "application/json"), ("content-encoding", "gzip"))
            return HTTPReply(200, headers, gzip_bomb())
        if kind == "redirect":
            location = self.location or moved_url
            return HTTPReply(302, (("location", location), ("content-length", "0")), b"")
        reply = normal()
        if kind == "not_object":
            return replace(reply, body=b"[" + reply.body + b"]")
        document = json.loads(reply.body)
        document["x-padding"] = "a" * OVERSIZED_PADDING  # kind == "oversized"
        return replace(reply, body=json.dumps(document, separators=(",", ":")).encode())
