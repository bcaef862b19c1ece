"""RFC 6750 on the request side: find the one bearer token a request sends, or say why not.

Pure functions over ASGI header lists and raw query/body bytes; no I/O. Everything a
client sends is hostile: nothing here allocates per parameter or backtracks, and nothing
of the request reaches an error message.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = [
    "BODYLESS_METHODS",
    "TWO_METHODS",
    "BearerRequestError",
    "extract_credentials",
    "has_access_token_parameter",
    "has_form_body",
    "parse_authorization",
    "parse_credentials",
    "quick_token",
]

_AUTHORIZATION = b"authorization"
# RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64TOKEN_BODY = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/"
# RFC 9110 §5.6.2: an auth-scheme is a token.
_AUTH_SCHEME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

DUPLICATE_HEADERS = "the request has more than one Authorization header"
TWO_METHODS = "the request uses more than one method to send a token"
MALFORMED_HEADER = "malformed Authorization header"
MISSING_TOKEN = "the Bearer scheme needs a token"
MISSING_DPOP_TOKEN = "the DPoP scheme needs a token"
MALFORMED_TOKEN = "malformed bearer token"
MALFORMED_DPOP_TOKEN = "malformed DPoP token"


class BearerRequestError(Exception):
    """The request sends credentials in a way RFC 6750 forbids (HTTP 400 invalid_request).

    ``description`` is a fixed, client-safe sentence; nothing of the request is in it.
    """

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


def parse_authorization(value: bytes) -> str | None:
    """The token of one ``Authorization: Bearer`` header value; None for another scheme
    (``DPoP`` included: see :func:`parse_credentials`).

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
    return _token(value, space, MISSING_TOKEN)


def parse_credentials(value: bytes) -> tuple[str, bool] | None:
    """``(token, dpop)`` of one ``Authorization`` value with the ``Bearer`` scheme
    (``dpop`` False) or the ``DPoP`` scheme (RFC 9449 §7.1, True); None for another.

    Both schemes are case-insensitive and carry a token68 (the b64token grammar). Raises
    :class:`BearerRequestError` for a malformed value.
    """
    value = value.strip(b" \t")
    space = value.find(b" ")
    scheme = (value if space < 0 else value[:space]).lower()
    if scheme == b"dpop":
        return _token(value, space, MISSING_DPOP_TOKEN, MALFORMED_DPOP_TOKEN), True
    token = parse_authorization(value)
    return None if token is None else (token, False)


def _token(value: bytes, space: int, missing: str, malformed: str = MALFORMED_TOKEN) -> str:
    """The b64token after the scheme of a stripped header ``value`` (``missing`` and
    ``malformed`` describe the errors: they name the scheme)."""
    token = value[space + 1 :].lstrip(b" ") if space > 0 else b""
    if not token:
        raise BearerRequestError(missing)
    body = token.rstrip(b"=")
    # b64token: the body characters, then only "=" padding (translate is the fast check).
    if not body or body.translate(None, _B64TOKEN_BODY):
        raise BearerRequestError(malformed)
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
    for anything else, which :func:`extract_credentials` then parses carefully.
    """
    try:
        value = _authorization(headers)
    except BearerRequestError:
        return None
    if value is None or not value.startswith(b"Bearer "):
        return None
    return value[7:]


def extract_credentials(
    headers: Iterable[tuple[bytes, bytes]], query_string: bytes = b""
) -> tuple[str, bool] | None:
    """``(token, dpop)`` of a request from its ASGI headers: the ``Bearer`` scheme
    (``dpop`` False) or the ``DPoP`` scheme (True); None without credentials of either.

    None means "no credentials": no ``Authorization`` header or another scheme. A token
    only in the query string is never accepted, so it is None too. Raises
    :class:`BearerRequestError` for two ``Authorization`` headers, a malformed one, or a
    header token together with an ``access_token`` query parameter.
    """
    value = _authorization(headers)
    if value is None:
        return None
    found = parse_credentials(value)
    if found is not None and query_string and has_access_token_parameter(query_string):
        raise BearerRequestError(TWO_METHODS)
    return found
