"""Sans-I/O half of the client-credentials grant (RFC 6749 §4.4).

Builds the token request and turns token-endpoint replies into a :class:`Token` or a
:class:`TokenRequestError` (§5.1, §5.2); discovery lives in ``resource_guard._discovery``,
shared with the key source. Nothing here touches the network, the disk or a clock.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TypeAlias, TypeGuard
from urllib.parse import quote, quote_plus

from .._fetch import json_object
from .._jws import read_unverified
from ..exceptions import MalformedTokenError, TokenRequestError

MAX_LIFETIME = 10 * 366 * 86400.0
"""An ``expires_in`` above ten years is treated as garbage, not as a promise."""
DEFAULT_LIFETIME = 300.0
"""Lifetime assumed when a reply has no ``expires_in`` and the token is not a JWT with ``exp``."""
SKEW_FRACTION = 0.5
"""The refresh skew never exceeds this fraction of a token's lifetime."""

ParamValue: TypeAlias = str | tuple[str, ...]
"""An extra form field's value: one string, or several sent as a repeated field in order."""

_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")


@dataclass(frozen=True, slots=True, repr=False)
class Token:
    """An access token and its timing, in epoch seconds of the configured clock."""

    access_token: str
    obtained_at: float
    expires_at: float
    refresh_at: float

    @classmethod
    def create(
        cls, access_token: str, *, obtained_at: float, expires_at: float, skew: float
    ) -> Token:
        """A token that asks for a refresh ``skew`` seconds (at most half its life) early."""
        lifetime = max(0.0, expires_at - obtained_at)
        refresh_at = expires_at - min(skew, lifetime * SKEW_FRACTION)
        return cls(access_token, obtained_at, expires_at, refresh_at)

    def __repr__(self) -> str:
        return f"Token(obtained_at={self.obtained_at!r}, expires_at={self.expires_at!r})"


def is_b64token(value: object) -> TypeGuard[str]:
    """True for a string fit to follow ``Bearer`` (RFC 6750 §2.1 ``b64token``)."""
    return isinstance(value, str) and _B64TOKEN.fullmatch(value) is not None


def token_form(
    *,
    scopes: Iterable[str],
    audience: str | None,
    extra_params: Mapping[str, ParamValue],
    client_id: str | None = None,
    client_secret: str | None = None,
) -> dict[str, ParamValue]:
    """The form fields of a client-credentials request (credentials only for ``_post``); a
    tuple value becomes one field per item, in order."""
    form: dict[str, ParamValue] = {"grant_type": "client_credentials"}
    if client_id is not None and client_secret is not None:
        form["client_id"] = client_id
        form["client_secret"] = client_secret
    scope = " ".join(scopes)
    if scope:
        form["scope"] = scope
    if audience is not None:
        form["audience"] = audience
    form.update(extra_params)
    return form


def safe_text(value: object, *, secret: str, limit: int = 200) -> str | None:
    """A server-supplied string made fit for messages: printable, short, secret removed."""
    if not isinstance(value, str):
        return None
    if secret:
        # The raw secret and the spellings a server may echo from a form body or a URL.
        for spelling in {secret, quote_plus(secret, safe=""), quote(secret, safe="")}:
            value = value.replace(spelling, "[redacted]")
    return _UNPRINTABLE.sub("?", value)[:limit]


def error_from_reply(
    status_code: int, body: bytes, *, where: str, secret: str
) -> TokenRequestError:
    """A :class:`TokenRequestError` for a refusal, with the RFC 6749 §5.2 fields when present."""
    document = json_object(body) or {}
    error = safe_text(document.get("error"), secret=secret, limit=80)
    description = safe_text(document.get("error_description"), secret=secret)
    message = f"the token endpoint {where} answered HTTP {status_code}"
    if error:
        message += f": {error}"
        if description:
            message += f" ({description})"
    return TokenRequestError(
        message, error=error, error_description=description, status_code=status_code
    )


def token_from_reply(
    status_code: int,
    body: bytes,
    *,
    where: str,
    secret: str,
    now: float,
    skew: float,
    token_type: str = "Bearer",
) -> Token:
    """The token of a successful reply (RFC 6749 §5.1), else a :class:`TokenRequestError`.

    The reply's ``token_type`` must be ``token_type`` (case-insensitive): ``Bearer``, or
    ``DPoP`` when the request carried a DPoP proof (RFC 9449 §5): a Bearer token then means
    the identity provider ignored the proof, and using it would silently drop the binding.
    """
    if status_code != 200:
        raise error_from_reply(status_code, body, where=where, secret=secret)
    document = json_object(body)
    if document is None:
        raise TokenRequestError(
            f"the token endpoint {where} answered with a body that is not a JSON object",
            status_code=status_code,
        )
    if "error" in document and "access_token" not in document:
        raise error_from_reply(status_code, body, where=where, secret=secret)

    def invalid(reason: str) -> TokenRequestError:
        return TokenRequestError(f"the token endpoint {where} {reason}", status_code=status_code)

    access_token = document.get("access_token")
    if not is_b64token(access_token):
        raise invalid("sent no usable access_token")
    issued_type = document.get("token_type")
    if not isinstance(issued_type, str):
        raise invalid("sent no token_type")
    if issued_type.lower() != token_type.lower():
        shown = safe_text(issued_type, secret=secret, limit=40)
        if token_type == "DPoP" and issued_type.lower() == "bearer":
            raise invalid(
                "issued a Bearer token although the request carried a DPoP proof: enable "
                "DPoP for this client at the identity provider, or drop dpop="
            )
        raise invalid(f"issued a token of type {shown!r}, not a {token_type} token")
    lifetime = _lifetime(document.get("expires_in"), access_token, now)
    if lifetime is None:
        raise invalid("sent an invalid expires_in")
    return Token.create(access_token, obtained_at=now, expires_at=now + lifetime, skew=skew)


def _lifetime(expires_in: object, access_token: str, now: float) -> float | None:
    """Seconds the token lives: ``expires_in``, else the JWT's ``exp``, else a default.

    None when ``expires_in`` is present but not a positive, plausible number of seconds
    (numbers and digit strings, as some providers send, are accepted).
    """
    if expires_in is None:
        return _jwt_lifetime(access_token, now) or DEFAULT_LIFETIME
    value: int | float
    if isinstance(expires_in, str) and expires_in.isascii() and expires_in.isdigit():
        value = int(expires_in[:20])  # more digits than that are out of range anyway
    elif isinstance(expires_in, int | float) and not isinstance(expires_in, bool):
        value = expires_in
    else:
        return None
    # Compared before any float conversion (a 400-digit int overflows one); NaN fails too.
    return float(value) if 0 < value <= MAX_LIFETIME else None


def _jwt_lifetime(access_token: str, now: float) -> float | None:
    """The remaining life from a JWT's ``exp``, read without verification (only for caching)."""
    try:
        _, claims = read_unverified(access_token)
    except MalformedTokenError:
        return None
    exp = claims.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        return None
    if not now < exp <= now + MAX_LIFETIME:  # before float(): huge ints overflow it
        return None
    remaining = float(exp) - now
    return remaining if 0 < remaining <= MAX_LIFETIME else None
