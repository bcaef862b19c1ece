"""Canonical, unpadded base64url (RFC 7515 §2), the only spelling a JWS may use."""

from __future__ import annotations

from base64 import urlsafe_b64encode
from binascii import Error as _Base64Error
from binascii import a2b_base64

# Map the URL-safe alphabet to the standard one, and "+", "/" and "=" to a byte that
# strict decoding refuses, so only the URL-safe alphabet without padding gets through.
_TO_STANDARD = bytes.maketrans(b"-_+/=", b"+/!!!")
# For a canonical encoding the unused low bits of the last character must be zero.
_LAST_CHAR_OK = {
    2: frozenset("AQgw"),  # 4 unused bits
    3: frozenset("AEIMQUYcgkosw048"),  # 2 unused bits
}
# The padding strict decoding wants, by length % 4 (a remainder of 1 is never valid).
_PADDING = (b"", b"", b"==", b"=")


def b64url_decode(segment: str) -> bytes:
    """Decode ``segment``; raise ValueError for padding, stray characters or other spellings."""
    remainder = len(segment) & 3
    if remainder and (remainder == 1 or segment[-1] not in _LAST_CHAR_OK[remainder]):
        raise ValueError("not canonical base64url")
    try:
        return a2b_base64(
            segment.encode("ascii").translate(_TO_STANDARD) + _PADDING[remainder],
            strict_mode=True,
        )
    except (_Base64Error, UnicodeEncodeError):
        raise ValueError("not valid base64url") from None


def b64url_encode(data: bytes) -> str:
    """Unpadded base64url of ``data``: the one spelling :func:`b64url_decode` accepts."""
    return urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
