"""Eager argument checks shared by the fake issuer's public methods."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["audience_value", "non_empty_str", "scope_tuple", "seconds"]


def non_empty_str(name: str, value: object) -> str:
    """``value`` if it is a non-empty str, else TypeError."""
    if not isinstance(value, str) or not value:
        raise TypeError(f"{name} must be a non-empty str")
    return value


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
    """Scopes from a space-delimited str or an iterable of str, duplicates dropped."""
    if isinstance(value, str):
        return tuple(dict.fromkeys(value.split()))
    if not isinstance(value, Iterable):
        raise TypeError(f"{name} must be a space-delimited str or an iterable of str")
    scopes = tuple(dict.fromkeys(value))
    for scope in scopes:
        if not isinstance(scope, str) or not scope or " " in scope:
            raise ValueError(f"every {name} value must be a non-empty str without spaces")
    return scopes


def seconds(name: str, value: object) -> int:
    """A whole number of seconds >= 0 (bool refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an int number of seconds >= 0, got {value!r}")
    return value
