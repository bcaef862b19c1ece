"""A controllable clock: one source of "now" shared by fake issuers and verifiers."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

from ._checks import finite_seconds

__all__ = ["FakeClock"]


class FakeClock:
    """Epoch seconds that stand still until a test moves them.

    Call it (``clock()``) wherever a ``clock`` callable is accepted: :class:`FakeIssuer`
    stamps ``iat``/``exp`` with it and :class:`~resource_guard.TokenVerifier` checks them
    against it, so :meth:`advance` expires tokens and ages cached keys at once, without
    sleeping. ``start`` defaults to the real time now, in whole seconds (like ``iat`` and
    ``exp``), so tokens also verify against verifiers on the real clock until the test
    moves it.
    """

    __slots__ = ("_now",)

    def __init__(self, start: float | None = None) -> None:
        self._now = (
            float(math.floor(time.time())) if start is None else finite_seconds("start", start)
        )

    def __call__(self) -> float:
        return self._now

    def __repr__(self) -> str:
        return f"FakeClock({self._now!r})"

    @property
    def now(self) -> float:
        """The current fake time in epoch seconds (settable)."""
        return self._now

    @now.setter
    def now(self, value: float) -> None:
        self._now = finite_seconds("now", value)

    @property
    def datetime(self) -> datetime:
        """The current fake time as an aware UTC datetime."""
        return datetime.fromtimestamp(self._now, UTC)

    def advance(self, seconds: float) -> float:
        """Move time forward by ``seconds`` (negative moves it back); return the new time."""
        self._now += finite_seconds("seconds", seconds)
        return self._now
