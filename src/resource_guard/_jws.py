"""Strict parsing of compact JWS tokens: segments, base64url, JSON, header types.

Nothing here touches a key. Headers repeat across the tokens of one issuer, so each distinct
header segment is parsed once and remembered (bounded).
"""

from __future__ import annotations

import base64
import binascii
import json
import json.scanner
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from ._b64 import b64url_decode
from .exceptions import MalformedTokenError

_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_NOT_COMPACT = "the token is not a compact JWS (three base64url segments)"
_HEADER_CACHE_SIZE = 256
# Header parameters whose value must be a string when present (RFC 7515 §4.1).
_STRING_HEADERS = ("kid", "typ", "cty", "jku", "x5u", "x5t", "x5t#S256")


def _decode(segment: str, what: str) -> bytes:
    try:
        return b64url_decode(segment)
    except ValueError:
        raise MalformedTokenError(f"the {what} is not canonical base64url") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    members = dict(pairs)
    if len(members) != len(pairs):
        raise ValueError("duplicate member")
    return members


_decoder = json.JSONDecoder(object_pairs_hook=_unique_members, parse_constant=_refuse_constant)
# A scanner with the decoder's settings (C): JSONDecoder.decode minus its whitespace regexes.
_scan_once: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(
    cast(Any, _decoder)  # typeshed wants a scanner here; any decoder-like object will do
)


def parse_json_object(raw: bytes, what: str) -> dict[str, Any]:
    """Parse UTF-8 JSON that must be an object without duplicate members or NaN/Infinity."""
    try:
        text = raw.decode("utf-8")
        try:
            value, end = _scan_once(text, 0)
        except StopIteration:
            end = -1
        if end != len(text):
            # Whitespace around the value, data after it, or no value: the decoder decides.
            value = _decoder.decode(text)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise MalformedTokenError(f"the {what} is not valid JSON") from None
    if not isinstance(value, dict):
        raise MalformedTokenError(f"the {what} is not a JSON object")
    return value


@dataclass(frozen=True, slots=True)
class Header:
    """The parts of a JOSE header that verification reads, already type-checked."""

    alg: str
    kid: str | None
    typ: str | None
    fields: dict[str, Any]


def _parse_header(segment: str) -> Header:
    fields = parse_json_object(_decode(segment, "header"), "header")
    alg = fields.get("alg")
    if not isinstance(alg, str) or not alg:
        raise MalformedTokenError("the header has no 'alg' string")
    for name in _STRING_HEADERS:
        if name in fields and not isinstance(fields[name], str):
            raise MalformedTokenError(f"the header's {name!r} is not a string")
    if "crit" in fields:
        # We implement no JWS extension, so every critical one is unknown (RFC 7515 §4.1.11).
        raise MalformedTokenError("the header lists critical extensions this verifier refuses")
    if "b64" in fields or "zip" in fields or "enc" in fields:
        raise MalformedTokenError("the header uses parameters that do not belong in a JWS")
    return Header(alg=alg, kid=fields.get("kid"), typ=fields.get("typ"), fields=fields)


@dataclass(frozen=True, slots=True)
class ParsedToken:
    """A structurally valid compact JWS, not yet verified, with its payload decoded."""

    header: Header
    payload: dict[str, Any]
    signing_input: bytes
    signature: bytes


def decode_payload(segment: str) -> dict[str, Any]:
    """The claims of a payload segment: canonical base64url of a UTF-8 JSON object.

    The verifier calls it only once the signature over the segment verified (jose's order),
    so nothing of an unsigned payload is ever parsed.
    """
    return parse_json_object(_decode(segment, "payload"), "payload")


class TokenParser:
    """Parses compact JWS strictly; remembers recently seen header segments."""

    __slots__ = ("_headers", "max_length")

    def __init__(self, max_length: int) -> None:
        self.max_length = max_length
        self._headers: dict[str, Header] = {}

    def header(self, segment: str) -> Header:
        """The parsed, type-checked header of a header segment (remembered, bounded)."""
        header = self._headers.get(segment)
        if header is None:
            header = _parse_header(segment)
            if len(self._headers) >= _HEADER_CACHE_SIZE:
                self._headers.clear()
            self._headers[segment] = header
        return header

    def parse(self, token: str) -> ParsedToken:
        """Split, decode and type-check ``token`` with its payload, unverified (for display
        and tests); raise MalformedTokenError if anything is off."""
        header, payload_segment, signing_input, signature = self.split(token)
        try:
            payload = decode_payload(payload_segment)
        except MalformedTokenError:
            if _TOKEN_SHAPE.fullmatch(token) is None:
                raise MalformedTokenError(_NOT_COMPACT) from None
            raise
        return ParsedToken(header, payload, signing_input, signature)

    def split(self, token: str) -> tuple[Header, str, bytes, bytes]:
        """``(header, payload segment, signing input, signature)`` of a compact JWS.

        Checks the size, the three segments, the header and the signature's encoding; the
        payload segment is left undecoded for :func:`decode_payload` after the signature.
        """
        if not isinstance(token, str):
            raise MalformedTokenError("the token is not a string")
        if len(token) > self.max_length:
            raise MalformedTokenError("the token is larger than this verifier accepts")
        if not token.isascii():  # the signing input is ASCII bytes (RFC 7515 §5.2)
            raise MalformedTokenError(_NOT_COMPACT)
        # Three non-empty segments; find() scans with memchr, several times faster than split().
        first = token.find(".")
        second = token.find(".", first + 1)
        if first <= 0 or second <= first + 1 or token.find(".", second + 1) >= 0:
            raise MalformedTokenError(_NOT_COMPACT)
        header_segment = token[:first]
        signature_segment = token[second + 1 :]
        if not signature_segment:
            raise MalformedTokenError(_NOT_COMPACT)
        # Strict decoding of each segment refuses every character outside the base64url
        # alphabet, so the shape is only matched to name the failure precisely.
        try:
            header = self._headers.get(header_segment) or self.header(header_segment)
            signature = _decode(signature_segment, "signature")
        except MalformedTokenError:
            if _TOKEN_SHAPE.fullmatch(token) is None:
                raise MalformedTokenError(_NOT_COMPACT) from None
            raise
        return header, token[first + 1 : second], token[:second].encode("ascii"), signature


def _lenient_object(part: str, name: str) -> dict[str, Any]:
    try:
        value = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (binascii.Error, ValueError):
        raise MalformedTokenError(f"not a JWT: the {name} is not base64url-encoded JSON") from None
    if not isinstance(value, dict):
        raise MalformedTokenError(f"not a JWT: the {name} is not a JSON object")
    return value


def read_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a compact JWS, read WITHOUT any check of the signature.

    For display (``resource-guard token inspect``, test assertions) and a client's own
    bookkeeping (when its token expires), never for a decision about access. Lenient where
    :class:`TokenParser` is strict (padding allowed). Raises MalformedTokenError saying
    what is unreadable: an encrypted JWE, a wrong number of parts, a part that is not
    base64url-encoded JSON object.
    """
    parts = token.split(".")
    if len(parts) == 5:
        raise MalformedTokenError("this is an encrypted token (JWE): its claims cannot be read")
    if len(parts) != 3:
        raise MalformedTokenError(f"not a JWT: expected 3 dot-separated parts, found {len(parts)}")
    return _lenient_object(parts[0], "header"), _lenient_object(parts[1], "payload")
