"""Shared pieces of the ``resource-guard`` command: errors, exit codes, time wording."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Final, TextIO

EXIT_OK: Final = 0
EXIT_INVALID: Final = 1
"""The token is not valid (or not readable)."""
EXIT_USAGE: Final = 2
"""Wrong options, configuration or files (argparse uses 2 too)."""
EXIT_UNAVAILABLE: Final = 3
"""Verification was not possible: the issuer's keys could not be had."""

MAX_INPUT_BYTES: Final = 1 << 20


class CLIError(Exception):
    """An error the command reports as one line, then exits with ``code``.

    Messages never hold a token, a secret or key material.
    """

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def read_token(value: str, stdin: TextIO | None = None) -> str:
    """The token given on the command line, or read from stdin for ``-``.

    Surrounding whitespace and a leading ``Bearer`` (pasted from a header) are dropped.
    """
    if value == "-":
        text = (stdin or sys.stdin).read(MAX_INPUT_BYTES + 1)
        if len(text) > MAX_INPUT_BYTES:
            raise CLIError("the token on standard input is larger than 1 MiB", EXIT_INVALID)
    else:
        text = value
    token = text.strip()
    scheme, _, rest = token.partition(" ")
    if scheme.lower() == "bearer":
        token = rest.strip()
    if not token:
        raise CLIError("no token given (pass it as an argument, or - to read stdin)")
    return token


def format_duration(seconds: float) -> str:
    """``4 min 59 s``, ``2 h 3 min``, ``3 d 4 h``: two units at most."""
    total = int(abs(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    return f"{secs} s"


def format_time(timestamp: float, now: float, *, expiry: bool = False) -> str:
    """``2026-11-26 02:09:11 UTC (in 4 min 59 s)``; ``expiry`` words it as an expiry."""
    try:
        moment = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return f"{timestamp!r} (not a representable time)"
    delta = timestamp - now
    span = format_duration(delta)
    if abs(delta) < 1:
        relative = "now"
    elif expiry:
        relative = f"expires in {span}" if delta >= 0 else f"expired {span} ago"
    else:
        relative = f"in {span}" if delta >= 0 else f"{span} ago"
    return f"{moment} ({relative})"
