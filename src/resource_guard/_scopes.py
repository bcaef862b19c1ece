"""Scope names (RFC 6749 §3.3): the one grammar every part of the library checks against.

``scope = scope-token *( SP scope-token )`` and ``scope-token = 1*( %x21 / %x23-5B /
%x5D-7E )``: printable ASCII without space, ``"`` or ``\\``, separated by single spaces.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["SCOPE_TOKEN", "check_scope_names", "split_scope"]

SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
"""One scope-token; use ``fullmatch``."""


def split_scope(value: str) -> list[str]:
    """The scope-tokens of a space-delimited ``scope`` string.

    Only %x20 separates tokens (runs of spaces and spaces at either end are tolerated);
    a piece holding anything else outside the grammar (a tab, a newline, a non-ASCII
    space, a quote) is malformed and grants nothing, neither whole nor in pieces.
    """
    fullmatch = SCOPE_TOKEN.fullmatch
    return [part for part in value.split(" ") if part and fullmatch(part)]


def check_scope_names(scopes: Iterable[object]) -> tuple[str, ...]:
    """Validate scope names an application or a client configures; duplicates dropped.

    Raises TypeError for a value that is not a str and ValueError for one outside the
    scope-token grammar (an empty string, a space, a quote...).
    """
    names: list[str] = []
    for scope in scopes:
        if not isinstance(scope, str):
            raise TypeError(f"scopes must be strings, got {type(scope).__name__}")
        if SCOPE_TOKEN.fullmatch(scope) is None:
            raise ValueError(
                f"invalid scope name {scope!r:.80}: a scope is one non-empty word of printable "
                'ASCII without spaces, " or \\; pass several scopes as separate arguments'
            )
        if scope not in names:
            names.append(scope)
    return tuple(names)
