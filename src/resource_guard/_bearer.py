"""RFC 6750 on the wire: read a bearer token from a request, write challenges and replies.

Pure functions over ASGI header lists (bytes in, bytes out); no I/O. Everything a client
sends is treated as hostile: values that reach a reply header are filtered to the
characters RFC 6750 allows, so no input can add a header or break the challenge syntax.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "BearerReplies",
    "BearerRequestError",
    "Reply",
    "check_scope_names",
    "extract_token",
    "has_access_token_parameter",
    "parse_authorization",
]

_AUTHORIZATION = b"authorization"
# RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64TOKEN_BODY = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/"
# RFC 9110 §5.6.2: an auth-scheme is a token.
_AUTH_SCHEME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
# RFC 6750 §3: error_description allows %x20-21 / %x23-5B / %x5D-7E; everything else goes.
_NOT_DESCRIPTION = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")
_NOT_SCOPE = re.compile(r"[^\x21\x23-\x5b\x5d-\x7e]")
_NOT_PRINTABLE = re.compile(r"[^\x20-\x7e]")
_MAX_DESCRIPTION = 200
_MAX_RETRY_AFTER = 3600

DUPLICATE_HEADERS = "the request has more than one Authorization header"
TWO_METHODS = "the request uses more than one method to send a token"
MALFORMED_HEADER = "malformed Authorization header"
MISSING_TOKEN = "the Bearer scheme needs a token"
MALFORMED_TOKEN = "malformed bearer token"


class BearerRequestError(Exception):
    """The request sends credentials in a way RFC 6750 forbids (HTTP 400 invalid_request).

    ``description`` is a fixed, client-safe sentence; nothing of the request is in it.
    """

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


def parse_authorization(value: bytes) -> str | None:
    """The token of one ``Authorization`` header value; None for another scheme.

    The scheme is case-insensitive and may be followed by one or more spaces; the token
    must match the b64token grammar. Raises :class:`BearerRequestError` for a malformed
    value.
    """
    value = value.strip(b" \t")
    space = value.find(b" ")
    scheme = value if space < 0 else value[:space]
    if len(scheme) != 6 or scheme.lower() != b"bearer":
        if _AUTH_SCHEME.fullmatch(scheme) is None:
            raise BearerRequestError(MALFORMED_HEADER)
        return None  # Basic, Digest, ...: not our credentials
    token = value[space + 1 :].lstrip(b" ") if space > 0 else b""
    if not token:
        raise BearerRequestError(MISSING_TOKEN)
    body = token.rstrip(b"=")
    # b64token: the body characters, then only "=" padding (translate is the fast check).
    if not body or body.translate(None, _B64TOKEN_BODY):
        raise BearerRequestError(MALFORMED_TOKEN)
    return token.decode("ascii")


def _any_spelling(name: str) -> bytes:
    """A bytes regex matching ``name`` with each character literal or percent-encoded
    (``%XX``, hex digits in either case), as a form or query parser would decode it."""
    parts = []
    for char in name:
        escape = b"%" + b"".join(
            b"[%s%s]" % (digit.upper(), digit.lower()) if digit.isalpha() else digit
            for digit in (bytes([d]) for d in b"%02X" % ord(char))
        )
        parts.append(b"(?:%s|%s)" % (re.escape(char).encode("ascii"), escape))
    return b"".join(parts)


ACCESS_TOKEN_NAME = re.compile(b"&" + _any_spelling("access_token") + rb"(?![^=&])")
"""A parameter named ``access_token`` in ``b"&" + data`` with ``;`` turned into ``&``:
a separator, the name in any spelling, then ``=``, a separator or the end. The search
skips to each ``&`` (a literal first byte) and every attempt stops by the next one (the
name holds none), so the scan is linear: no backtracking, whatever the input."""
_SEMICOLON_AS_AMPERSAND = bytes.maketrans(b";", b"&")


def has_access_token_parameter(data: bytes) -> bool:
    """True when a query string or form body names an ``access_token`` parameter.

    Every spelling a parser would decode to that name counts: each character literal or
    percent-encoded (either hex case), the parameter first or after a separator, with a
    value, an empty one or none. Separators are ``&`` and ``;`` (some form parsers split
    on ``;`` too; refusing more is the safe side). Values are never looked at.

    Linear in ``len(data)`` and cheap on hostile input: at most one translation and one
    regex search, both in C (no splitting, no decoding, no loop over parameters).
    """
    if b"%" not in data and b"access_token" not in data:
        return False  # the name is only spelled without "%" as itself
    if b";" in data:
        data = data.translate(_SEMICOLON_AS_AMPERSAND)
    return ACCESS_TOKEN_NAME.search(b"&" + data) is not None


_CONTENT_TYPE = b"content-type"
_FORM_TYPE = b"application/x-www-form-urlencoded"
BODYLESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def has_form_body(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """True when ``Content-Type`` declares a form (``application/x-www-form-urlencoded``),
    whose body could hold an ``access_token`` (RFC 6750 §2.2). The caller skips methods
    without a body (:data:`BODYLESS_METHODS`)."""
    for name, value in headers:
        if len(name) == 12 and name.lower() == _CONTENT_TYPE:
            return value.split(b";", 1)[0].strip().lower() == _FORM_TYPE
    return False


def _authorization(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """The value of the one ``Authorization`` header (None without one); raises
    :class:`BearerRequestError` for two."""
    value: bytes | None = None
    for name, raw in headers:
        if len(name) == 13 and (name == _AUTHORIZATION or name.lower() == _AUTHORIZATION):
            if value is not None:
                raise BearerRequestError(DUPLICATE_HEADERS)
            value = raw
    return value


def quick_token(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """``<token>`` of the one ``Authorization: Bearer <token>`` header, *unchecked* bytes.

    Only good for looking up a token verified before (a hit proves it well-formed); None
    for anything else, which :func:`extract_token` then parses carefully.
    """
    try:
        value = _authorization(headers)
    except BearerRequestError:
        return None
    if value is None or not value.startswith(b"Bearer "):
        return None
    return value[7:]


def extract_token(headers: Iterable[tuple[bytes, bytes]], query_string: bytes = b"") -> str | None:
    """The bearer token of a request from its ASGI headers, or None without one.

    None means "no credentials": no ``Authorization`` header or another scheme. A token
    only in the query string is never accepted, so it is None too. Raises
    :class:`BearerRequestError` for two ``Authorization`` headers, a malformed one, or a
    header token together with an ``access_token`` query parameter.
    """
    value = _authorization(headers)
    if value is None:
        return None
    token = parse_authorization(value)
    if token is not None and query_string and has_access_token_parameter(query_string):
        raise BearerRequestError(TWO_METHODS)
    return token


def check_scope_names(scopes: Iterable[object]) -> tuple[str, ...]:
    """Validate scope names given by the application (RFC 6749 scope-token grammar)."""
    names: list[str] = []
    for scope in scopes:
        if not isinstance(scope, str):
            raise TypeError(f"scopes must be strings, got {type(scope).__name__}")
        if _SCOPE_TOKEN.fullmatch(scope) is None:
            raise ValueError(
                f"invalid scope name {scope!r}: a scope is one non-empty word of printable "
                'ASCII without spaces, " or \\; pass several scopes as separate arguments'
            )
        if scope not in names:
            names.append(scope)
    return tuple(names)


def _quoted(value: str) -> str:
    """An RFC 9110 quoted-string of printable ASCII (quote and backslash escaped)."""
    value = _NOT_PRINTABLE.sub("", value)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _description(value: str) -> str:
    return _NOT_DESCRIPTION.sub("", value)[:_MAX_DESCRIPTION].strip()


def challenge(
    realm: str,
    *,
    error: str | None = None,
    description: str | None = None,
    scopes: Iterable[str] = (),
) -> bytes:
    """A ``WWW-Authenticate`` value: ``Bearer realm="..."`` plus the error parameters.

    The realm is escaped as a quoted-string; the description and scopes keep only the
    characters RFC 6750 allows in them, so no input can break out of the quotes.
    """
    parts = [f"Bearer realm={_quoted(realm)}"]
    if error is not None:
        parts.append(f'error="{_description(error)}"')
    if description:
        parts.append(f'error_description="{_description(description)}"')
    cleaned = [s for s in (_NOT_SCOPE.sub("", scope) for scope in scopes) if s]
    if cleaned:
        parts.append(f'scope="{" ".join(cleaned)}"')
    return ", ".join(parts).encode("ascii")


@dataclass(frozen=True, slots=True)
class Reply:
    """A complete HTTP reply: status, header pairs (bytes) and a JSON body holding
    ``error`` and ``description``."""

    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    error: str
    description: str

    def header(self, name: bytes) -> bytes | None:
        """The first value of header ``name`` (lower case), or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None


def _reply(
    status: int,
    error: str,
    description: str,
    extra: tuple[tuple[bytes, bytes], ...] = (),
) -> Reply:
    body = json.dumps(
        {"error": error, "error_description": description}, separators=(",", ":")
    ).encode("ascii")
    headers = (
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode("ascii")),
        (b"cache-control", b"no-store"),
        *extra,
    )
    return Reply(status, headers, body, error, description)


class BearerReplies:
    """The refusals of one realm, precomputed where they do not depend on the request.

    | situation                      | status | challenge                            |
    |--------------------------------|--------|--------------------------------------|
    | no credentials                 | 401    | ``Bearer realm="..."``               |
    | malformed request              | 400    | ``error="invalid_request"``          |
    | token refused                  | 401    | ``error="invalid_token"``            |
    | scope missing                  | 403    | ``error="insufficient_scope"``       |
    | keys unavailable               | 503    | none; ``Retry-After`` instead        |
    """

    __slots__ = ("_invalid_request", "_invalid_token", "_scope", "missing", "realm", "unavailable")

    _CACHE_LIMIT = 256

    def __init__(self, realm: str) -> None:
        self.realm = realm
        self.missing = _reply(
            401,
            "unauthorized",
            "a bearer token is required",
            ((b"www-authenticate", challenge(realm)),),
        )
        """401 for a request without credentials: a bare challenge (RFC 6750 §3.1)."""
        self.unavailable = _reply(
            503, "temporarily_unavailable", "token verification is temporarily unavailable"
        )
        """503 without ``Retry-After``, for failures of unknown cause."""
        self._invalid_request: dict[str, Reply] = {}
        self._invalid_token: dict[str, Reply] = {}
        self._scope: dict[tuple[tuple[str, ...], bool], Reply] = {}

    def invalid_request(self, description: str) -> Reply:
        """400 ``invalid_request``."""
        return self._cached(self._invalid_request, description, 400, "invalid_request")

    def invalid_token(self, description: str) -> Reply:
        """401 ``invalid_token`` with a short, client-safe description."""
        return self._cached(self._invalid_token, description, 401, "invalid_token")

    def _cached(self, cache: dict[str, Reply], description: str, status: int, error: str) -> Reply:
        reply = cache.get(description)
        if reply is None:
            text = _description(description) or error
            header = challenge(self.realm, error=error, description=text)
            reply = _reply(status, error, text, ((b"www-authenticate", header),))
            if len(cache) >= self._CACHE_LIMIT:
                cache.clear()
            cache[description] = reply
        return reply

    def insufficient_scope(self, required: Iterable[str], *, any_of: bool = False) -> Reply:
        """403 ``insufficient_scope`` naming every scope the route asks for."""
        key = (tuple(required), any_of)
        reply = self._scope.get(key)
        if reply is None:
            text = (
                "the token grants none of the accepted scopes"
                if any_of
                else "the token lacks a required scope"
            )
            header = challenge(
                self.realm, error="insufficient_scope", description=text, scopes=key[0]
            )
            reply = _reply(403, "insufficient_scope", text, ((b"www-authenticate", header),))
            if len(self._scope) >= self._CACHE_LIMIT:
                self._scope.clear()
            self._scope[key] = reply
        return reply

    def keys_unavailable(self, retry_after: float) -> Reply:
        """503 with ``Retry-After`` in whole seconds (1 s to 1 h)."""
        seconds = retry_after if math.isfinite(retry_after) else _MAX_RETRY_AFTER
        seconds = min(max(1, math.ceil(seconds)), _MAX_RETRY_AFTER)
        base = self.unavailable
        headers = (*base.headers, (b"retry-after", str(seconds).encode()))
        return Reply(503, headers, base.body, base.error, base.description)
