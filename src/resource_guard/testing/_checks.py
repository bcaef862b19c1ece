"""Eager argument checks shared by the testing helpers.

One rule everywhere: a value of the wrong type raises :class:`TypeError`, a value of the
right type that is out of range or unknown raises :class:`ValueError`; both messages name
the argument and say what it must be.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, MutableMapping
from typing import Any, TypeVar

from .._options import renamed
from .._scopes import check_scope_names

__all__ = [
    "audience_value",
    "finite_seconds",
    "integer",
    "non_empty_str",
    "one_of",
    "renamed",
    "renamed_in",
    "scope_tuple",
    "seconds",
]

T = TypeVar("T")


def non_empty_str(name: str, value: object) -> str:
    """``value`` if it is a non-empty str: TypeError for another type, ValueError for ""."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a non-empty str, got {type(value).__name__}")
    if not value:
        raise ValueError(f"{name} must be a non-empty str, got ''")
    return value


def one_of(name: str, value: object, allowed: Iterable[str], *, unknown: str) -> str:
    """``value`` if it is one of the ``allowed`` strings (TypeError when not a str);
    ``unknown`` starts the ValueError message, e.g. ``"unsupported algorithm"``."""
    choices = tuple(allowed)
    listed = ", ".join(choices)
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, one of {listed}; got {type(value).__name__}")
    if value not in choices:
        raise ValueError(f"{unknown} {value!r}: use one of {listed}")
    return value


def integer(name: str, value: object, low: int, high: int | None = None) -> int:
    """An int (bool refused) between ``low`` and ``high`` (inclusive; None: no bound)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return value


def seconds(name: str, value: object) -> int:
    """A whole number of seconds >= 0 (bool refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int number of seconds, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be an int number of seconds >= 0, got {value!r}")
    return value


def finite_seconds(name: str, value: object) -> float:
    """A finite int or float number of seconds (bool refused), as a float."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number of seconds, got {value!r}")
    return float(value)


def audience_value(name: str, value: object) -> str | tuple[str, ...]:
    """One audience (str) or several (a non-empty tuple of str)."""
    if isinstance(value, str):
        return non_empty_str(name, value)
    if not isinstance(value, Iterable):
        raise TypeError(f"{name} must be a str or a sequence of str")
    values = tuple(value)
    if not values:
        raise ValueError(f"{name} must name at least one audience")
    for item in values:
        non_empty_str(f"every {name} value", item)
    return values


def scope_tuple(name: str, value: object) -> tuple[str, ...]:
    """Scopes from a space-delimited str or an iterable of str, duplicates dropped, each
    an RFC 6749 scope-token (a malformed scope claim is minted with ``claims=``)."""
    if isinstance(value, str):
        value = [part for part in value.split(" ") if part]
    elif not isinstance(value, Iterable):
        raise TypeError(f"{name} must be a space-delimited str or an iterable of str")
    try:
        return check_scope_names(value)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{name}: {exc}") from None


def renamed_in(options: MutableMapping[str, Any], new_name: str, old_name: str) -> None:
    """Rename ``old_name`` to ``new_name`` in the ``**options`` a function forwards, as
    :func:`renamed` does (the warning points at that function's caller)."""
    if old_name in options:
        value = renamed(new_name, options.get(new_name), old_name, options.pop(old_name), depth=2)
        options[new_name] = value
