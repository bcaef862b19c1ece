"""Server-provided DPoP nonces (RFC 9449 §9): stateless, rotating with a time window."""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from collections.abc import Callable

from .. import _options as opt
from .._b64 import b64url_encode

__all__ = ["NonceSource"]

_MIN_SECRET_BYTES = 16


class NonceSource:
    """Rotating nonces for ``DPoP-Nonce``: the HMAC-SHA256 of the current time window's
    number under a secret, so nothing is stored and any process holding the same secret
    makes and accepts the same nonces (give a fleet one secret to make them valid
    fleet-wide; the default, a random secret, is good for one process only).

    A nonce is accepted during its window and the next one, so it lives between ``window``
    and twice that.

    Args:
        secret: at least 16 bytes (a str is UTF-8 encoded); None draws a random one.
        window: seconds between two rotations (10 s to 1 day).
        clock: seconds since the epoch; injectable for tests.
    """

    __slots__ = ("_clock", "_current", "_index", "_previous", "_secret", "window")

    def __init__(
        self,
        secret: bytes | str | None = None,
        *,
        window: float = 300,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if secret is None:
            secret = secrets.token_bytes(32)
        elif isinstance(secret, str):
            secret = secret.encode("utf-8")
        elif not isinstance(secret, bytes):
            raise TypeError("secret must be bytes, a str or None")
        if len(secret) < _MIN_SECRET_BYTES:
            raise ValueError(f"secret must hold at least {_MIN_SECRET_BYTES} bytes")
        self._secret = secret
        self.window = opt.seconds("window", window, low=10, high=86400)
        if not callable(clock):
            raise TypeError("clock must be a callable returning seconds since the epoch")
        self._clock = clock
        self._index = -1
        self._current = self._previous = ""

    def _nonce(self, index: int) -> str:
        mac = hmac.new(self._secret, b"dpop-nonce:%d" % index, hashlib.sha256).digest()
        return b64url_encode(mac[:18])

    def _refresh(self) -> None:
        index = math.floor(self._clock() / self.window)
        if index != self._index:
            self._previous = self._current if index == self._index + 1 else self._nonce(index - 1)
            self._current = self._nonce(index)
            self._index = index

    def current(self) -> str:
        """The nonce of the current window (what a ``DPoP-Nonce`` header sends)."""
        self._refresh()
        return self._current

    def valid(self, nonce: str) -> bool:
        """True for the nonce of the current window or of the previous one."""
        self._refresh()
        given = nonce.encode("utf-8", "replace")
        return hmac.compare_digest(given, self._current.encode()) or hmac.compare_digest(
            given, self._previous.encode()
        )

    def fresh(self, nonce: str) -> bool:
        """True for the nonce of the current window only (a valid one that is not fresh
        earns the client the current nonce, so it rotates in time)."""
        self._refresh()
        return hmac.compare_digest(nonce.encode("utf-8", "replace"), self._current.encode())
