"""RFC 6750, the request side: the Authorization header, the access_token scan (pure)."""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resource_guard import _bearer_request
from resource_guard._bearer_request import (
    DUPLICATE_HEADERS,
    MALFORMED_DPOP_TOKEN,
    MALFORMED_HEADER,
    MALFORMED_TOKEN,
    MISSING_DPOP_TOKEN,
    MISSING_TOKEN,
    TWO_METHODS,
    BearerRequestError,
    extract_credentials,
    has_access_token_parameter,
    parse_authorization,
    parse_credentials,
    quick_token,
)

TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln"


def auth(value: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"host", b"api.test"), (b"authorization", value)]


@pytest.mark.parametrize(
    "value",
    [
        b"Bearer " + TOKEN.encode(),
        b"bearer " + TOKEN.encode(),
        b"BEARER " + TOKEN.encode(),
        b"BeArEr " + TOKEN.encode(),
        b"Bearer    " + TOKEN.encode(),
        b"  Bearer " + TOKEN.encode() + b"  ",
    ],
    ids=["canonical", "lower", "upper", "mixed", "many-spaces", "outer-whitespace"],
)
def test_bearer_token_is_read(value: bytes) -> None:
    assert parse_authorization(value) == TOKEN


@pytest.mark.parametrize(
    "token",
    ["abc", "a-b.c_d~e+f/g", "abc=", "abc==", "A1" * 100],
    ids=["plain", "all-symbols", "one-pad", "two-pad", "long"],
)
def test_b64token_grammar_accepts(token: str) -> None:
    assert parse_authorization(b"Bearer " + token.encode()) == token


@pytest.mark.parametrize(
    ("value", "description"),
    [
        (b"Bearer", MISSING_TOKEN),
        (b"Bearer ", MISSING_TOKEN),
        (b"Bearer     ", MISSING_TOKEN),
        (b"Bearer a b", MALFORMED_TOKEN),
        (b"Bearer a,b", MALFORMED_TOKEN),
        (b'Bearer "abc"', MALFORMED_TOKEN),
        (b"Bearer =abc", MALFORMED_TOKEN),
        (b"Bearer ===", MALFORMED_TOKEN),
        (b"Bearer ab=c", MALFORMED_TOKEN),
        (b"Bearer abc\x00", MALFORMED_TOKEN),
        (b"Bearer abc\r\nX-Injected: 1", MALFORMED_TOKEN),
        (b"Bearer \xc3\xa9t\xc3\xa9", MALFORMED_TOKEN),
        (b"Bearer\tabc", MALFORMED_HEADER),
        (b"", MALFORMED_HEADER),
        (b"   ", MALFORMED_HEADER),
        (b"B@arer abc", MALFORMED_HEADER),
        (b"\xff\xfe abc", MALFORMED_HEADER),
    ],
    ids=[
        "scheme-only",
        "scheme-and-space",
        "scheme-and-spaces",
        "space-inside",
        "comma-inside",
        "quoted",
        "leading-pad",
        "only-padding",
        "pad-in-middle",
        "nul-byte",
        "crlf-injection",
        "non-ascii",
        "tab-separator",
        "empty",
        "blank",
        "bad-scheme-char",
        "binary-scheme",
    ],
)
def test_malformed_header_is_invalid_request(value: bytes, description: str) -> None:
    with pytest.raises(BearerRequestError) as caught:
        parse_authorization(value)
    assert caught.value.description == description


@pytest.mark.parametrize(
    "value",
    [
        b"Basic dXNlcjpwYXNz",
        b"Digest username=x, realm=y",
        b"DPoP abc",
        b"Token abc",
        b"Bearerx abc",
    ],
    ids=["basic", "digest", "dpop", "token", "bearer-prefix"],
)
def test_other_schemes_are_no_credentials(value: bytes) -> None:
    assert parse_authorization(value) is None


def test_no_authorization_header_is_no_credentials() -> None:
    assert extract_credentials([(b"host", b"api.test")]) is None


def test_header_name_is_matched_case_insensitively() -> None:
    assert extract_credentials([(b"Authorization", b"Bearer abc")]) == ("abc", False)


@pytest.mark.parametrize(
    "second",
    [b"Bearer abc", b"Bearer other", b"Basic dXNlcjpwYXNz"],
    ids=["same-token", "other-token", "other-scheme"],
)
def test_two_authorization_headers_are_invalid_request(second: bytes) -> None:
    headers = [(b"authorization", b"Bearer abc"), (b"authorization", second)]
    with pytest.raises(BearerRequestError) as caught:
        extract_credentials(headers)
    assert caught.value.description == DUPLICATE_HEADERS


@pytest.mark.parametrize(
    "query",
    [
        b"access_token=abc",
        b"a=1&access_token=abc",
        b"access_token",
        b"access_token=",
        b"access%5Ftoken=abc",
        b"%61ccess_token=abc",
    ],
    ids=["alone", "second", "no-value", "empty-value", "encoded-underscore", "encoded-letter"],
)
def test_header_plus_query_token_is_invalid_request(query: bytes) -> None:
    with pytest.raises(BearerRequestError) as caught:
        extract_credentials(auth(b"Bearer abc"), query)
    assert caught.value.description == TWO_METHODS


@pytest.mark.parametrize(
    "query",
    [b"", b"a=1", b"my_access_token=abc", b"access_token_hint=x", b"x=access_token", b"q=%41"],
    ids=["empty", "other", "suffix-name", "prefix-name", "as-value", "encoded-other"],
)
def test_other_query_parameters_are_fine(query: bytes) -> None:
    assert extract_credentials(auth(b"Bearer abc"), query) == ("abc", False)


def test_query_token_alone_is_no_credentials() -> None:
    assert extract_credentials([(b"host", b"api.test")], b"access_token=abc") is None


def test_query_token_with_another_scheme_is_no_credentials() -> None:
    assert extract_credentials(auth(b"Basic dXNlcjpwYXNz"), b"access_token=abc") is None


def test_access_token_parameter_detection() -> None:
    assert has_access_token_parameter(b"x=1&access_token=2")
    assert not has_access_token_parameter(b"x=%20&y=2")


# -- the access_token parameter scan: every spelling, linear time ------------------------

FULLY_ENCODED = b"%61%63%63%65%73%73%5F%74%6F%6B%65%6E"
NAMED = {
    "plain": b"access_token=x",
    "after-another": b"a=1&access_token=x",
    "encoded-first-letter": b"%61ccess_token=x",
    "encoded-underscore": b"access%5Ftoken=x",
    "encoded-underscore-lower-hex": b"access%5ftoken",
    "fully-encoded": FULLY_ENCODED + b"=x",
    "fully-encoded-lower-hex": FULLY_ENCODED.lower() + b"=x",
    "mixed-hex-case": b"%61ccess%5ftoke%6E=x",
    "bare-name": b"access_token",
    "empty-value": b"access_token=",
    "semicolon-separator": b"x;access_token=y",
    "ends-at-ampersand": b"access_token&a=1",
    "ends-at-semicolon": b"a=1;access_token;b=2",
    "empty-parts-around": b"&&access_token=x&&",
    "after-a-long-prefix": b"%&" * 1000 + b"access_token=x",
    "hostile-value": b"access_token=%zz%",
}
NOT_NAMED = {
    "empty": b"",
    "other": b"a=1",
    "glued-prefix": b"xaccess_token=1",
    "plural": b"access_tokens=1",
    "longer-name": b"access_token_x=1",
    "suffix-name": b"my_access_token=1",
    "as-value": b"a=access_token",
    "as-value-after-semicolon": b"a=1;b=x=access_token",
    "encoded-separator": b"x%26access_token=1",
    "encoded-equals": b"access_token%3Dx",
    "double-encoded": b"access%255Ftoken=1",
    "upper-case": b"ACCESS_TOKEN=1",
    "plus-is-a-space": b"access+token=1",
    "invalid-escape": b"access%5Gtoken=1",
    "truncated-escape": b"access%5",
    "encoded-other-name": b"q=%41",
    "hostile-flood": b"%&" * 30_000,
}


def reference_names_access_token(data: bytes) -> bool:
    """The careful, slow reading: split on the separators, decode each name, compare."""
    for part in re.split(rb"[&;]", data):
        if unquote_to_bytes(part.partition(b"=")[0]) == b"access_token":
            return True
    return False


@pytest.mark.parametrize("data", NAMED.values(), ids=NAMED.keys())
def test_every_spelling_of_access_token_is_caught(data: bytes) -> None:
    assert reference_names_access_token(data)
    assert has_access_token_parameter(data)
    with pytest.raises(BearerRequestError) as caught:
        extract_credentials(auth(b"Bearer abc"), data)
    assert caught.value.description == TWO_METHODS


@pytest.mark.parametrize("data", NOT_NAMED.values(), ids=NOT_NAMED.keys())
def test_other_names_and_values_are_not_access_token(data: bytes) -> None:
    assert not reference_names_access_token(data)
    assert not has_access_token_parameter(data)
    assert extract_credentials(auth(b"Bearer abc"), data) == ("abc", False)


FRAGMENTS = st.sampled_from(
    [
        *(bytes([c]) for c in b"acestokn_=&;%+x"),
        *(b"%%%02X" % c for c in b"acestokn_&;=%"),
        *(b"%%%02x" % c for c in b"acestokn_&;=%"),
        b"access",
        b"token",
        b"access_token",
        b"%5",
        b"%G",
    ]
)


@settings(max_examples=2000, deadline=None)
@given(
    st.lists(FRAGMENTS, max_size=24).map(b"".join) | st.binary(max_size=64),
)
def test_the_scan_decides_like_a_careful_decoder(data: bytes) -> None:
    assert has_access_token_parameter(data) == reference_names_access_token(data)


class CountingPattern:
    """Stands in for the scan's compiled pattern and counts the calls made to it."""

    def __init__(self, pattern: re.Pattern[bytes]) -> None:
        self.pattern = pattern
        self.calls = 0

    def search(self, data: bytes) -> re.Match[bytes] | None:
        self.calls += 1
        return self.pattern.search(data)


@pytest.mark.parametrize(
    "data",
    [
        b"%&" * 32_768,
        b"%" + b"&" * 65_535,
        b"%" + b";" * 65_535,
        b"&%61" * 16_384,
        b"%&access_toke" * 5000,
    ],
    ids=["percent-ampersand", "ampersands", "semicolons", "encoded-a", "almost-the-name"],
)
def test_the_scan_is_one_regex_search_however_hostile_the_input(
    data: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No splitting, no loop over parts: one search of a linear pattern (see _bearer_request)."""
    counting = CountingPattern(_bearer_request.ACCESS_TOKEN_NAME)
    monkeypatch.setattr(_bearer_request, "ACCESS_TOKEN_NAME", counting)
    assert not has_access_token_parameter(data)
    assert counting.calls == 1
    assert has_access_token_parameter(data + b"&access_token")
    assert counting.calls == 2


def test_input_without_percent_or_the_name_skips_the_regex(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counting = CountingPattern(_bearer_request.ACCESS_TOKEN_NAME)
    monkeypatch.setattr(_bearer_request, "ACCESS_TOKEN_NAME", counting)
    assert not has_access_token_parameter(b"item=tea&note=" + b"x" * 65_536)
    assert counting.calls == 0


# -- the unchecked look-up key for tokens verified before --------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (auth(b"Bearer " + TOKEN.encode()), TOKEN.encode()),
        ([(b"Authorization", b"Bearer " + TOKEN.encode())], TOKEN.encode()),
        (auth(b"Bearer  " + TOKEN.encode()), b" " + TOKEN.encode()),  # the look-up misses
        (auth(b"Bearer caf\xe9"), b"caf\xe9"),  # never ASCII, so never a cache hit
        (auth(b"bearer " + TOKEN.encode()), None),
        (auth(b"Basic eDp5"), None),
        ([(b"host", b"api.test")], None),
        ([*auth(b"Bearer a"), (b"authorization", b"Bearer a")], None),
    ],
    ids=[
        "canonical",
        "capitalized-name",
        "two-spaces",
        "latin-1",
        "other-case",
        "basic",
        "no-header",
        "two-headers",
    ],
)
def test_quick_token_is_only_a_lookup_key(
    headers: list[tuple[bytes, bytes]], expected: bytes | None
) -> None:
    assert quick_token(headers) == expected


# -- the DPoP scheme (RFC 9449 §7.1) ------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"DPoP " + TOKEN.encode(), (TOKEN, True)),
        (b"dpop " + TOKEN.encode(), (TOKEN, True)),
        (b"  DPOP   " + TOKEN.encode(), (TOKEN, True)),
        (b"Bearer " + TOKEN.encode(), (TOKEN, False)),
        (b"bEaReR " + TOKEN.encode(), (TOKEN, False)),
        (b"Basic dXNlcjpwYXNz", None),
        (b"DPoPx abc", None),
    ],
)
def test_credentials_name_their_scheme(value: bytes, expected: tuple[str, bool] | None) -> None:
    assert parse_credentials(value) == expected


@pytest.mark.parametrize(
    ("value", "description"),
    [
        (b"DPoP", MISSING_DPOP_TOKEN),
        (b"DPoP   ", MISSING_DPOP_TOKEN),
        (b"DPoP a b", MALFORMED_DPOP_TOKEN),
        (b"DPoP a=b", MALFORMED_DPOP_TOKEN),
        (b"Bearer", MISSING_TOKEN),
        (b"Bad(scheme) x", MALFORMED_HEADER),
    ],
)
def test_malformed_credentials_are_invalid_request(value: bytes, description: str) -> None:
    with pytest.raises(BearerRequestError) as caught:
        parse_credentials(value)
    assert caught.value.description == description


def test_extract_credentials_takes_the_dpop_scheme_too() -> None:
    assert extract_credentials(auth(b"DPoP abc"), b"page=2") == ("abc", True)
    with pytest.raises(BearerRequestError, match="more than one method"):
        extract_credentials(auth(b"DPoP abc"), b"access_token=x")
    assert quick_token(auth(b"DPoP abc")) is None  # never answered from the cache unchecked
