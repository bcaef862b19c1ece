"""What every command shares: exit codes, errors, reading a token, list-valued options,
deprecated spellings, time wording."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Final, TextIO, TypeAlias

__all__ = [
    "DEFAULT_CLI_ISSUER",
    "EXIT_INVALID",
    "EXIT_OK",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "MAX_INPUT_BYTES",
    "CLIError",
    "Commands",
    "ListOption",
    "StoreOption",
    "deprecation_notes",
    "format_duration",
    "format_time",
    "formatter",
    "read_token",
    "seconds_value",
    "split_words",
]

# argparse has no public name for the object add_subparsers() returns; this alias is the
# one place that names it, for the commands' add_*_command(commands) functions.
Commands: TypeAlias = "argparse._SubParsersAction[Any]"
"""What ``ArgumentParser.add_subparsers()`` returns: each command adds its parser to it."""

EXIT_OK: Final = 0
EXIT_INVALID: Final = 1
"""The token is not valid (or not readable)."""
EXIT_USAGE: Final = 2
"""Wrong options, configuration or files (argparse uses 2 too)."""
EXIT_UNAVAILABLE: Final = 3
"""Verification was not possible: the issuer's keys could not be had."""

MAX_INPUT_BYTES: Final = 1 << 20

DEFAULT_CLI_ISSUER: Final = "http://127.0.0.1:9400"
"""Where ``issuer serve`` listens by default, and the ``iss`` ``token mint`` stamps."""

_DEPRECATIONS = "deprecations"


class CLIError(Exception):
    """An error the command reports as one line, then exits with ``code``.

    Messages never hold a token, a secret or key material.
    """

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def formatter(prog: str) -> argparse.HelpFormatter:
    """The help layout of every command: descriptions and epilogs keep their lines."""
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=30)


def split_words(values: Iterable[str] | None) -> list[str]:
    """The one rule for list values: items separated by commas and/or spaces, from any
    number of values; empty items and repeats are dropped, the first order is kept."""
    words: list[str] = []
    for value in values or ():
        words.extend(value.replace(",", " ").split())
    return list(dict.fromkeys(words))


def _note_deprecated(namespace: argparse.Namespace, used: str, canonical: str) -> None:
    notes: list[str] = [*getattr(namespace, _DEPRECATIONS, ())]
    note = f"{used} is deprecated, use {canonical} (same values)"
    if note not in notes:
        notes.append(note)
    setattr(namespace, _DEPRECATIONS, notes)


def deprecation_notes(namespace: argparse.Namespace) -> list[str]:
    """One line per deprecated option spelling the command line used."""
    return list(getattr(namespace, _DEPRECATIONS, ()))


class _Option(argparse.Action):
    """An option whose first spelling is canonical and whose ``deprecated`` spellings
    still work (the command then prints a notice once the line parsed)."""

    def __init__(
        self,
        option_strings: Sequence[str],
        dest: str,
        *,
        deprecated: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.deprecated = frozenset(deprecated)

    def note_spelling(self, namespace: argparse.Namespace, option_string: str | None) -> None:
        if option_string in self.deprecated:
            _note_deprecated(namespace, option_string, self.option_strings[0])


class StoreOption(_Option):
    """``store``, with deprecated spellings."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, values)
        self.note_spelling(namespace, option_string)


class ListOption(_Option):
    """A list-valued option: repeatable, and each value may hold several items separated
    by commas and/or spaces (:func:`split_words`). Every list option of every command
    uses it, so ``--scope a,b``, ``--scope 'a b'`` and ``--scope a --scope b`` agree."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        earlier: list[str] = getattr(namespace, self.dest, None) or []
        given = [values] if isinstance(values, str) else [str(value) for value in values or ()]
        setattr(namespace, self.dest, split_words([*earlier, *given]))
        self.note_spelling(namespace, option_string)


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


def seconds_value(text: str) -> float:
    """An argparse ``type`` for a plain number of seconds (``--leeway``, ``--timeout``)."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
