"""Canonical, unpadded base64url (RFC 7515 §2), the only spelling a JWS may use."""

from __future__ import annotations

import binascii

# Map the URL-safe alphabet to the standard one, and "+", "/" and "=" to a byte that
# strict decoding refuses, so only the URL-safe alphabet without padding gets through.
_TO_STANDARD = bytes.maketrans(b"-_+/=", b"+/!!!")
# For a canonical encoding the unused low bits of the last character must be zero.
_LAST_CHAR_OK = {
    2: frozenset("AQgw"),  # 4 unused bits
    3: frozenset("AEIMQUYcgkosw048"),  # 2 unused bits
}


def b64url_decode(segment: str) -> bytes:
    """Decode ``segment``; raise ValueError for padding, stray characters or other spellings."""
    remainder = len(segment) % 4
    if remainder == 1 or (remainder and segment[-1] not in _LAST_CHAR_OK[remainder]):
        raise ValueError("not canonical base64url")
    try:
        return binascii.a2b_base64(
            segment.encode("ascii").translate(_TO_STANDARD) + b"=" * (-len(segment) % 4),
            strict_mode=True,
        )
    except (binascii.Error, UnicodeEncodeError):
        raise ValueError("not valid base64url") from None
