"""Validation of :class:`~resource_guard.client.ClientCredentialsAuth` options and its
environment variables. Messages say what to fix and never repeat a secret."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any, Final

import httpx

from .. import _options as shared_options
from .._options import split_list
from .._scopes import SCOPE_TOKEN
from ._token import ParamValue

AUTH_METHODS = ("client_secret_basic", "client_secret_post")
RESERVED_PARAMS = {
    "grant_type": "it is always client_credentials",
    "client_id": "use client_id=",
    "client_secret": "use client_secret=",
    "scope": "use scopes=",
    "audience": "use audience=",
}

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

ENV_STRINGS = {
    "client_id": "RESOURCE_GUARD_CLIENT_ID",
    "token_url": "RESOURCE_GUARD_TOKEN_URL",
    "issuer": "RESOURCE_GUARD_ISSUER",
    # Never RESOURCE_GUARD_AUDIENCE: that is the protected service's own audience (read by
    # TokenVerifier.from_env); asking the IdP for tokens addressed to it would be wrong.
    "audience": "RESOURCE_GUARD_CLIENT_AUDIENCE",
    "cache_dir": "RESOURCE_GUARD_TOKEN_CACHE_DIR",
    "auth_method": "RESOURCE_GUARD_CLIENT_AUTH_METHOD",
}
ENV_SECRET = "RESOURCE_GUARD_CLIENT_SECRET"
ENV_SCOPES = "RESOURCE_GUARD_SCOPES"

RENAMED: Final = {"refetch_cooldown": "cooldown"}
"""Deprecated keyword -> its name now: the old spelling still works, with a warning."""


class Default(float):
    """A default number that tells whether the caller passed the option (``is``), so that
    an option given under both of its names is refused; it reads as the plain number."""

    __slots__ = ()


DEFAULT_COOLDOWN: Final = Default(10.0)
"""Least seconds between two token drops caused by 401 replies, unless ``cooldown=``."""


def renamed(options: MutableMapping[str, Any], *, depth: int = 1) -> None:
    """Move deprecated keywords in ``options`` (the ``**kwargs`` of the function ``depth``
    frames up) to their new names, each with a :class:`DeprecationWarning` pointing at that
    function's caller. Both spellings at once is a :class:`TypeError`."""
    for old, new in RENAMED.items():
        if old in options:
            given = options.get(new)
            current = None if isinstance(given, Default) else given
            options[new] = shared_options.renamed(
                new, current, old, options.pop(old), depth=depth + 1
            )


def text(name: str, value: object) -> str:
    """A non-empty string without control characters (the value may be shown)."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {type(value).__name__}")
    if not value.strip() or _CONTROL.search(value):
        raise ValueError(f"{name} must be a non-empty string without control characters")
    return value


def secret(value: object) -> str:
    """The client secret: a non-empty string. The value is never shown."""
    if not isinstance(value, str):
        raise TypeError(f"client_secret must be a string, got {type(value).__name__}")
    if not value or _CONTROL.search(value):
        raise ValueError("client_secret must be a non-empty string without control characters")
    return value


def scopes(value: object) -> tuple[str, ...]:
    """Scopes from a space-delimited string or an iterable of strings, deduplicated in order."""
    items: Iterable[object]
    if value is None:
        items = ()
    elif isinstance(value, str):
        items = value.split()
    elif isinstance(value, Iterable) and not isinstance(value, bytes | Mapping):
        items = value
    else:
        raise TypeError("scopes must be a space-delimited string or a sequence of strings")
    result: dict[str, None] = {}
    for item in items:
        if not isinstance(item, str) or not SCOPE_TOKEN.fullmatch(item):
            raise ValueError(
                f"scopes must be RFC 6749 scope tokens (no spaces, quotes or backslashes), "
                f"got {item!r}"
            )
        result[item] = None
    return tuple(result)


def extra_params(value: object) -> dict[str, ParamValue]:
    """Extra form fields for the token request: a string, or a list of strings sent as one
    repeated field each, in order (RFC 8707 ``resource``). A one-item list becomes its
    string, since both send the same request. ``resource`` values may not hold a fragment
    (RFC 8707 §2); whether one is an absolute URI is left to the IdP (Entra ID v1 takes an
    application id there)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(
            "extra_params must be a mapping of parameter names to strings or lists of strings"
        )
    result: dict[str, ParamValue] = {}
    for name, item in value.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"extra_params names must be non-empty strings, got {name!r}")
        if name in RESERVED_PARAMS:
            raise ValueError(f"extra_params must not set {name!r}: {RESERVED_PARAMS[name]}")
        values = _param_values(name, item)
        if name == "resource":
            for uri in values:
                if "#" in uri:
                    raise ValueError(
                        "extra_params['resource'] values must be without a fragment "
                        f"(RFC 8707 §2), got {uri!r:.100}"
                    )
        result[name] = values[0] if len(values) == 1 else values
    return result


def _param_values(name: str, item: object) -> tuple[str, ...]:
    """The values of one extra parameter: a string, or a non-empty list or tuple of them
    (ordered: a set is refused)."""
    if isinstance(item, str):
        return (item,)
    if not isinstance(item, list | tuple):
        got = type(item).__name__
    elif not item:
        raise ValueError(f"extra_params[{name!r}] must not be empty")
    else:
        wrong = [type(part).__name__ for part in item if not isinstance(part, str)]
        if not wrong:
            return tuple(item)
        got = f"a {type(item).__name__} holding {wrong[0]}"
    raise TypeError(f"extra_params[{name!r}] must be a string or a list of strings, got {got}")


def auth_method(value: object) -> str:
    """One of :data:`AUTH_METHODS`."""
    for method in AUTH_METHODS:
        if value == method:
            return method
    raise ValueError(f"auth_method must be one of {', '.join(AUTH_METHODS)}, got {value!r}")


def http_clients(value: object) -> tuple[httpx.Client | None, httpx.AsyncClient | None]:
    """At most one ``httpx.Client`` and one ``httpx.AsyncClient``, alone or in a sequence."""
    items: tuple[object, ...]
    if value is None:
        items = ()
    elif isinstance(value, list | tuple):
        items = tuple(value)
    else:
        items = (value,)
    sync_client: httpx.Client | None = None
    async_client: httpx.AsyncClient | None = None
    for item in items:
        if isinstance(item, httpx.Client) and sync_client is None:
            sync_client = item
        elif isinstance(item, httpx.AsyncClient) and async_client is None:
            async_client = item
        else:
            raise TypeError(
                "http_client must be an httpx.Client, an httpx.AsyncClient, or a pair of one "
                f"of each, got {type(item).__name__}"
            )
    return sync_client, async_client


def from_environ(environ: Mapping[str, str], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Constructor keywords from ``RESOURCE_GUARD_*`` variables, ``overrides`` winning."""
    options: dict[str, Any] = {}
    url_given = "token_url" in overrides or "issuer" in overrides
    for option, variable in ENV_STRINGS.items():
        if url_given and option in ("token_url", "issuer"):
            continue
        raw = environ.get(variable, "").strip()
        if raw:
            options[option] = raw
    raw_secret = environ.get(ENV_SECRET, "")
    if raw_secret.strip():
        options["client_secret"] = raw_secret
    raw_scopes = environ.get(ENV_SCOPES, "").strip()
    if raw_scopes:
        options["scopes"] = split_list(raw_scopes)
    options.update(overrides)
    missing = [
        variable
        for option, variable in (
            ("client_id", ENV_STRINGS["client_id"]),
            ("client_secret", ENV_SECRET),
        )
        if options.get(option) is None
    ]
    if options.get("token_url") is None and options.get("issuer") is None:
        missing.append(f"{ENV_STRINGS['token_url']} (or {ENV_STRINGS['issuer']})")
    if missing:
        raise ValueError(f"missing environment variables: {', '.join(missing)}")
    return options
