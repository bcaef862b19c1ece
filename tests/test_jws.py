"""Strict compact-JWS parsing: segments, canonical base64url, JSON, header types."""

from __future__ import annotations

import re

import pytest

from resource_guard._b64 import b64url_decode
from resource_guard._jws import TokenParser, decode_payload, read_unverified
from resource_guard.exceptions import MalformedTokenError
from tests.helpers import b64url, compact, segment

HEADER = {"alg": "RS256", "kid": "k1", "typ": "at+jwt"}
PAYLOAD = {"sub": "user", "exp": 1}


def parse(token: str) -> object:
    return TokenParser(max_length=4096).parse(token)


def test_parses_a_well_formed_token() -> None:
    parsed = TokenParser(max_length=4096).parse(compact(HEADER, PAYLOAD, b"sig"))
    assert parsed.header.alg == "RS256"
    assert parsed.header.kid == "k1"
    assert parsed.payload == PAYLOAD
    assert parsed.signature == b"sig"
    assert parsed.signing_input == f"{segment(HEADER)}.{segment(PAYLOAD)}".encode()


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("", id="empty"),
        pytest.param("abc", id="one-segment"),
        pytest.param("abc.def", id="two-segments"),
        pytest.param("a.b.c.d.e", id="five-segments-jwe"),
        pytest.param(f"{segment(HEADER)}.{segment(PAYLOAD)}.", id="empty-signature"),
        pytest.param(f".{segment(PAYLOAD)}.AAAA", id="empty-header"),
        pytest.param(f"{segment(HEADER)}.{segment(PAYLOAD)}.AA==", id="padded"),
        pytest.param(f"{segment(HEADER)}.{segment(PAYLOAD)}.AA+/", id="standard-alphabet"),
        pytest.param(f"{segment(HEADER)} .{segment(PAYLOAD)}.AAAA", id="space"),
        pytest.param(f"{segment(HEADER)}.{segment(PAYLOAD)}.AAAA\n", id="newline"),
        pytest.param(f"{segment(HEADER)}.{segment(PAYLOAD)}.AAAÄ", id="non-ascii"),
        pytest.param(f"{segment(HEADER)}.{segment(PAYLOAD)}.AAAAA", id="length-mod-4-is-1"),
        pytest.param(f"{segment(HEADER)}.{segment(PAYLOAD)}.AB", id="non-zero-trailing-bits-2"),
        pytest.param(f"{segment(HEADER)}.{segment(PAYLOAD)}.AAB", id="non-zero-trailing-bits-3"),
    ],
)
def test_refuses_bad_structure_and_encoding(token: str) -> None:
    with pytest.raises(MalformedTokenError):
        parse(token)


def test_refuses_a_token_over_the_size_cap_before_decoding() -> None:
    token = compact(HEADER, {"pad": "x" * 5000})
    with pytest.raises(MalformedTokenError, match="larger"):
        TokenParser(max_length=4096).parse(token)


def test_refuses_a_non_string() -> None:
    with pytest.raises(MalformedTokenError):
        TokenParser(max_length=4096).parse(b"a.b.c")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("header", "payload"),
    [
        pytest.param(b64url(b"not json"), segment(PAYLOAD), id="header-not-json"),
        pytest.param(segment(HEADER), b64url(b"not json"), id="payload-not-json"),
        pytest.param(segment(["RS256"]), segment(PAYLOAD), id="header-array"),
        pytest.param(segment(HEADER), segment("claims"), id="payload-string"),
        pytest.param(segment(HEADER), segment(None), id="payload-null"),
        pytest.param(segment(HEADER), b64url(b'{"exp": NaN}'), id="payload-nan"),
        pytest.param(segment(HEADER), b64url(b'{"exp": Infinity}'), id="payload-infinity"),
        pytest.param(segment(HEADER), b64url(b'{"sub":"a","sub":"b"}'), id="duplicate-claim"),
        pytest.param(b64url(b'{"alg":"RS256","alg":"none"}'), segment(PAYLOAD), id="duplicate-alg"),
        pytest.param(segment(HEADER), b64url(b'{"a":{"b":1,"b":2}}'), id="nested-duplicate"),
        pytest.param(segment(HEADER), b64url(b'{"sub":"\xff"}'), id="invalid-utf8"),
        pytest.param(segment(HEADER), b64url(b"\xef\xbb\xbf{}"), id="utf8-bom"),
        pytest.param(segment(HEADER), b64url(b"[" * 100_000), id="deep-nesting"),
    ],
)
def test_refuses_bad_json(header: str, payload: str) -> None:
    with pytest.raises(MalformedTokenError):
        parse(f"{header}.{payload}.AAAA")


@pytest.mark.parametrize(
    "header",
    [
        pytest.param({}, id="no-alg"),
        pytest.param({"alg": ""}, id="empty-alg"),
        pytest.param({"alg": None}, id="null-alg"),
        pytest.param({"alg": ["RS256"]}, id="alg-list"),
        pytest.param({"alg": "RS256", "kid": 7}, id="kid-number"),
        pytest.param({"alg": "RS256", "kid": None}, id="kid-null"),
        pytest.param({"alg": "RS256", "typ": ["at+jwt"]}, id="typ-list"),
        pytest.param({"alg": "RS256", "jku": {"url": "x"}}, id="jku-object"),
        pytest.param({"alg": "RS256", "crit": ["exp"]}, id="crit-unknown"),
        pytest.param({"alg": "RS256", "crit": []}, id="crit-empty"),
        pytest.param({"alg": "RS256", "b64": False, "crit": ["b64"]}, id="unencoded-payload"),
        pytest.param({"alg": "RS256", "b64": False}, id="b64-without-crit"),
        pytest.param({"alg": "RS256", "zip": "DEF"}, id="zip"),
        pytest.param({"alg": "RS256", "enc": "A128GCM"}, id="enc"),
    ],
)
def test_refuses_bad_header_values(header: dict[str, object]) -> None:
    with pytest.raises(MalformedTokenError):
        parse(compact(header, PAYLOAD))


def test_header_cache_is_bounded() -> None:
    parser = TokenParser(max_length=4096)
    for index in range(600):
        parser.parse(compact({"alg": "RS256", "kid": f"k{index}"}, PAYLOAD))
    assert len(parser._headers) <= 256


def test_repeated_header_segment_parses_once() -> None:
    parser = TokenParser(max_length=4096)
    first = parser.parse(compact(HEADER, PAYLOAD)).header
    second = parser.parse(compact(HEADER, {"sub": "other"})).header
    assert first is second


@pytest.mark.parametrize(
    ("encoded", "decoded"),
    [
        ("", b""),
        ("AA", b"\x00"),
        ("AAA", b"\x00\x00"),
        ("AAAA", b"\x00\x00\x00"),
        ("_-8", b"\xff\xef"),
    ],
)
def test_b64url_decodes_canonical_input(encoded: str, decoded: bytes) -> None:
    assert b64url_decode(encoded) == decoded


@pytest.mark.parametrize("encoded", ["A", "AB", "AAB", "AA=", "A A", "AA==", "é", "+/+/"])
def test_b64url_refuses_other_spellings(encoded: str) -> None:
    with pytest.raises(ValueError, match="base64url"):
        b64url_decode(encoded)


def test_json_with_surrounding_whitespace_is_accepted() -> None:
    payload = b64url(b' {"sub": "u"} ')
    token = f"{segment(HEADER)}.{payload}.AAAA"
    assert TokenParser(max_length=4096).parse(token).payload == {"sub": "u"}


@pytest.mark.parametrize(
    "raw", [b'{"sub": "u"} {}', b'{"sub": "u"}x', b""], ids=["two", "junk", "empty"]
)
def test_data_after_the_json_value_is_refused(raw: bytes) -> None:
    with pytest.raises(MalformedTokenError):
        parse(f"{segment(HEADER)}.{b64url(raw)}.AAAA")


def test_split_leaves_the_payload_undecoded() -> None:
    """The verifier parses no claim before the signature verified (jose's order)."""
    token = f"{segment(HEADER)}.not-json-at-all.{b64url(b'sig')}"
    header, payload_segment, signing_input, signature = TokenParser(max_length=4096).split(token)
    assert header.alg == "RS256"
    assert payload_segment == "not-json-at-all"
    assert signing_input == f"{segment(HEADER)}.not-json-at-all".encode()
    assert signature == b"sig"
    with pytest.raises(MalformedTokenError, match="payload"):
        decode_payload(payload_segment)


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(f"{segment(HEADER)}.{segment(PAYLOAD)}Ä.AAAA", id="non-ascii-payload"),
        pytest.param(f"{segment(HEADER)}.\u0661.AAAA", id="arabic-digit-payload"),
    ],
)
def test_split_refuses_a_token_that_is_not_ascii(token: str) -> None:
    """A non-ASCII payload segment cannot become signing-input bytes: refused, never a crash."""
    with pytest.raises(MalformedTokenError, match="compact JWS"):
        TokenParser(max_length=4096).split(token)


@pytest.mark.parametrize(
    ("token", "message"),
    [
        pytest.param("a.b.c.d.e", "encrypted token (JWE)", id="jwe"),
        pytest.param("a.b", "expected 3 dot-separated parts, found 2", id="two-parts"),
        pytest.param(f"%%%.{segment(PAYLOAD)}.", "header is not base64url", id="header"),
        pytest.param(f"{segment(HEADER)}.{b64url(b'[1]')}.", "not a JSON object", id="array"),
    ],
)
def test_read_unverified_names_what_is_unreadable(token: str, message: str) -> None:
    with pytest.raises(MalformedTokenError, match=re.escape(message)):
        read_unverified(token)


def test_read_unverified_tolerates_padding_and_checks_nothing() -> None:
    """For display: a padded segment and a signature that is not even base64 still read."""
    token = f"{segment(HEADER)}==.{segment(PAYLOAD)}.not a signature"
    assert read_unverified(token) == (HEADER, PAYLOAD)


def test_a_payload_outside_the_base64url_alphabet_is_not_a_compact_jws() -> None:
    with pytest.raises(MalformedTokenError, match="compact JWS"):
        parse(f"{segment(HEADER)}.{segment(PAYLOAD)}+.AAAA")


def test_a_header_segment_is_parsed_once_and_remembered() -> None:
    parser = TokenParser(max_length=4096)
    assert parser.header(segment(HEADER)) is parser.header(segment(HEADER))
