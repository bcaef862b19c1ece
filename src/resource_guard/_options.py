"""Eager validation of configuration values, with messages that say what to fix."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

T = TypeVar("T")


def seconds(name: str, value: object, *, low: float, high: float) -> float:
    """A number of seconds in ``[low, high]`` (booleans and NaN refused)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if math.isnan(value) or not low <= value <= high:
        raise ValueError(f"{name} must be between {low:g} and {high:g} seconds, got {value!r}")
    return float(value)


def count(name: str, value: object, *, low: int, high: int) -> int:
    """A whole number in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value!r}")
    return value


def strings(name: str, value: object, *, allow_empty: bool = False) -> tuple[str, ...]:
    """One string or an iterable of non-empty strings (a lone str is one item, not chars)."""
    items: Iterable[object]
    if isinstance(value, str):
        items = (value,)
    elif isinstance(value, Iterable) and not isinstance(value, bytes | Mapping):
        items = value
    else:
        raise TypeError(f"{name} must be a string or a sequence of strings")
    result: list[str] = []
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise ValueError(f"{name} must hold non-empty strings, got {item!r}")
        result.append(item)
    if not result and not allow_empty:
        raise ValueError(f"{name} must not be empty")
    return tuple(result)


def from_env(environ: Mapping[str, str], variable: str, convert: Callable[[str], T]) -> T | None:
    """The converted value of ``variable``, or None when unset or blank."""
    raw = environ.get(variable, "").strip()
    if not raw:
        return None
    try:
        return convert(raw)
    except ValueError:
        raise ValueError(f"environment variable {variable}={raw!r} is not valid") from None


def settings_from_env(
    environ: Mapping[str, str] | None,
    table: Iterable[tuple[str, str, Callable[[str], object]]],
    required: int,
    overrides: Mapping[str, object],
) -> dict[str, object]:
    """The keyword options a ``from_env`` builds: each (option, variable, converter) of
    ``table`` read from ``environ`` (None: ``os.environ``), then ``overrides``; ValueError
    naming the first ``required`` variables of the table that neither gave."""
    env = os.environ if environ is None else environ
    rows = tuple(table)
    settings: dict[str, object] = {}
    for option, variable, convert in rows:
        value = from_env(env, variable, convert)
        if value is not None:
            settings[option] = value
    settings.update(overrides)
    missing = [variable for option, variable, _ in rows[:required] if option not in settings]
    if missing:
        raise ValueError(f"set the environment variable(s) {', '.join(missing)}")
    return settings


def split_list(raw: str) -> tuple[str, ...]:
    """Split a comma- or space-separated environment value."""
    return tuple(part for part in raw.replace(",", " ").split() if part)


def parse_bool(raw: str) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off`` (any case)."""
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


def renamed(new_name: str, new: T, old_name: str, old: T | None, *, depth: int = 1) -> T | None:
    """The value of keyword ``new_name``, also accepted under its deprecated spelling
    ``old_name`` (None: not given). The old spelling warns (:class:`DeprecationWarning`
    pointing at the code that called the function ``depth`` frames up: 1 is the function
    calling this one); both at once is a :class:`TypeError`."""
    if old is None:
        return new
    if new is not None:
        raise TypeError(
            f"got both {new_name}= and {old_name}= (its deprecated spelling): pass {new_name}= only"
        )
    warnings.warn(
        f"{old_name}= is deprecated, use {new_name}=", DeprecationWarning, stacklevel=depth + 2
    )
    return old
