"""RFC 6750 parsing of the Authorization header, challenges and JSON replies (pure)."""

from __future__ import annotations

import json
import re
from urllib.parse import unquote_to_bytes

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resource_guard import _bearer
from resource_guard._bearer import (
    DUPLICATE_HEADERS,
    MALFORMED_HEADER,
    MALFORMED_TOKEN,
    MISSING_TOKEN,
    TWO_METHODS,
    BearerReplies,
    BearerRequestError,
    challenge,
    check_scope_names,
    extract_token,
    has_access_token_parameter,
    parse_authorization,
    quick_token,
)

TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln"

# RFC 9110 challenge syntax with RFC 6750 parameters: only these shapes may ever be sent.
CHALLENGE = re.compile(
    r'Bearer realm="(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*"'
    r'(?:, (?:error|error_description|scope)="[\x20\x21\x23-\x5b\x5d-\x7e]*")*'
)


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
    assert extract_token([(b"host", b"api.test")]) is None


def test_header_name_is_matched_case_insensitively() -> None:
    assert extract_token([(b"Authorization", b"Bearer abc")]) == "abc"


@pytest.mark.parametrize(
    "second",
    [b"Bearer abc", b"Bearer other", b"Basic dXNlcjpwYXNz"],
    ids=["same-token", "other-token", "other-scheme"],
)
def test_two_authorization_headers_are_invalid_request(second: bytes) -> None:
    headers = [(b"authorization", b"Bearer abc"), (b"authorization", second)]
    with pytest.raises(BearerRequestError) as caught:
        extract_token(headers)
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
        extract_token(auth(b"Bearer abc"), query)
    assert caught.value.description == TWO_METHODS


@pytest.mark.parametrize(
    "query",
    [b"", b"a=1", b"my_access_token=abc", b"access_token_hint=x", b"x=access_token", b"q=%41"],
    ids=["empty", "other", "suffix-name", "prefix-name", "as-value", "encoded-other"],
)
def test_other_query_parameters_are_fine(query: bytes) -> None:
    assert extract_token(auth(b"Bearer abc"), query) == "abc"


def test_query_token_alone_is_no_credentials() -> None:
    assert extract_token([(b"host", b"api.test")], b"access_token=abc") is None


def test_query_token_with_another_scheme_is_no_credentials() -> None:
    assert extract_token(auth(b"Basic dXNlcjpwYXNz"), b"access_token=abc") is None


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
        extract_token(auth(b"Bearer abc"), data)
    assert caught.value.description == TWO_METHODS


@pytest.mark.parametrize("data", NOT_NAMED.values(), ids=NOT_NAMED.keys())
def test_other_names_and_values_are_not_access_token(data: bytes) -> None:
    assert not reference_names_access_token(data)
    assert not has_access_token_parameter(data)
    assert extract_token(auth(b"Bearer abc"), data) == "abc"


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
    """No splitting, no loop over parts: one search of a linear pattern (see _bearer)."""
    counting = CountingPattern(_bearer.ACCESS_TOKEN_NAME)
    monkeypatch.setattr(_bearer, "ACCESS_TOKEN_NAME", counting)
    assert not has_access_token_parameter(data)
    assert counting.calls == 1
    assert has_access_token_parameter(data + b"&access_token")
    assert counting.calls == 2


def test_input_without_percent_or_the_name_skips_the_regex(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counting = CountingPattern(_bearer.ACCESS_TOKEN_NAME)
    monkeypatch.setattr(_bearer, "ACCESS_TOKEN_NAME", counting)
    assert not has_access_token_parameter(b"item=tea&note=" + b"x" * 65_536)
    assert counting.calls == 0


def test_bare_challenge_has_no_error() -> None:
    assert challenge("orders") == b'Bearer realm="orders"'


def test_challenge_with_every_parameter() -> None:
    value = challenge(
        "api",
        error="insufficient_scope",
        description="the token lacks a required scope",
        scopes=("orders:read", "orders:write"),
    )
    assert value == (
        b'Bearer realm="api", error="insufficient_scope", '
        b'error_description="the token lacks a required scope", '
        b'scope="orders:read orders:write"'
    )


HOSTILE = [
    'x"\r\nSet-Cookie: a=b',
    'x", error="none',
    "x\\",
    "x\x00\x01\x7f",
    "caf\u00e9 \u202e",
    "\n\n\n",
    '"' * 50,
    "\\" * 50,
]
HOSTILE_IDS = [
    "crlf",
    "quote-breakout",
    "backslash",
    "controls",
    "non-ascii",
    "newlines",
    "quotes",
    "backslashes",
]


@pytest.mark.parametrize("value", HOSTILE, ids=HOSTILE_IDS)
def test_hostile_description_cannot_break_the_challenge(value: str) -> None:
    header = challenge("api", error="invalid_token", description=value).decode("ascii")
    assert CHALLENGE.fullmatch(header), header
    assert "\r" not in header
    assert "\n" not in header


@pytest.mark.parametrize("value", HOSTILE, ids=HOSTILE_IDS)
def test_hostile_realm_is_escaped(value: str) -> None:
    header = challenge(value).decode("ascii")
    assert CHALLENGE.fullmatch(header), header


@pytest.mark.parametrize("value", HOSTILE, ids=HOSTILE_IDS)
def test_hostile_scope_cannot_break_the_challenge(value: str) -> None:
    header = challenge("api", error="insufficient_scope", scopes=(value, "ok")).decode("ascii")
    assert CHALLENGE.fullmatch(header), header
    assert header.endswith('ok"')


def test_long_description_is_cut() -> None:
    header = challenge("api", error="invalid_token", description="x" * 5000)
    assert len(header) < 300


@pytest.fixture
def replies() -> BearerReplies:
    return BearerReplies("orders")


def body(reply_body: bytes) -> object:
    return json.loads(reply_body)


def test_missing_reply_is_bare_401(replies: BearerReplies) -> None:
    reply = replies.missing
    assert reply.status == 401
    assert reply.header(b"www-authenticate") == b'Bearer realm="orders"'
    assert body(reply.body) == {
        "error": "unauthorized",
        "error_description": "a bearer token is required",
    }


def test_invalid_request_reply(replies: BearerReplies) -> None:
    reply = replies.invalid_request(DUPLICATE_HEADERS)
    assert reply.status == 400
    assert reply.header(b"www-authenticate") == (
        b'Bearer realm="orders", error="invalid_request", '
        b'error_description="the request has more than one Authorization header"'
    )
    assert body(reply.body) == {"error": "invalid_request", "error_description": DUPLICATE_HEADERS}


def test_invalid_token_reply(replies: BearerReplies) -> None:
    reply = replies.invalid_token("the token expired")
    assert reply.status == 401
    assert reply.header(b"www-authenticate") == (
        b'Bearer realm="orders", error="invalid_token", error_description="the token expired"'
    )
    assert body(reply.body) == {"error": "invalid_token", "error_description": "the token expired"}


def test_invalid_token_reply_without_usable_description(replies: BearerReplies) -> None:
    reply = replies.invalid_token("\u00e9\u00e9")
    assert body(reply.body) == {"error": "invalid_token", "error_description": "invalid_token"}


def test_insufficient_scope_reply_lists_every_required_scope(replies: BearerReplies) -> None:
    reply = replies.insufficient_scope(("orders:read", "orders:write"))
    assert reply.status == 403
    assert reply.header(b"www-authenticate") == (
        b'Bearer realm="orders", error="insufficient_scope", '
        b'error_description="the token lacks a required scope", '
        b'scope="orders:read orders:write"'
    )
    assert body(reply.body) == {
        "error": "insufficient_scope",
        "error_description": "the token lacks a required scope",
    }


def test_any_of_scope_reply_says_so(replies: BearerReplies) -> None:
    reply = replies.insufficient_scope(("a", "b"), any_of=True)
    assert body(reply.body) == {
        "error": "insufficient_scope",
        "error_description": "the token grants none of the accepted scopes",
    }


@pytest.mark.parametrize(
    ("retry_after", "header"),
    [
        (30.0, b"30"),
        (0.2, b"1"),
        (2.5, b"3"),
        (-5, b"1"),
        (1e9, b"3600"),
        (float("inf"), b"3600"),
        (float("nan"), b"3600"),
    ],
    ids=["whole", "fraction-rounds-up", "half", "negative", "huge", "inf", "nan"],
)
def test_unavailable_reply_has_retry_after_in_whole_seconds(
    replies: BearerReplies, retry_after: float, header: bytes
) -> None:
    reply = replies.keys_unavailable(retry_after)
    assert reply.status == 503
    assert reply.header(b"retry-after") == header
    assert reply.header(b"www-authenticate") is None
    assert body(reply.body) == {
        "error": "temporarily_unavailable",
        "error_description": "token verification is temporarily unavailable",
    }


def test_replies_are_json_with_length_and_no_store(replies: BearerReplies) -> None:
    reply = replies.invalid_token("bad")
    assert reply.header(b"content-type") == b"application/json"
    assert reply.header(b"content-length") == str(len(reply.body)).encode()
    assert reply.header(b"cache-control") == b"no-store"


def test_replies_are_reused(replies: BearerReplies) -> None:
    assert replies.invalid_token("x") is replies.invalid_token("x")
    assert replies.insufficient_scope(("a",)) is replies.insufficient_scope(("a",))


def test_reply_caches_stay_bounded(replies: BearerReplies) -> None:
    for number in range(600):
        replies.invalid_token(f"d{number}")
        replies.insufficient_scope((f"s{number}",))
    assert len(replies._invalid_token) <= 256
    assert len(replies._scope) <= 256


def test_scope_names_are_validated() -> None:
    assert check_scope_names(["a", "b:c", "a"]) == ("a", "b:c")


@pytest.mark.parametrize(
    "scope",
    ["", "a b", 'a"b', "a\\b", "caf\u00e9", "a\n"],
    ids=["empty", "space", "quote", "backslash", "non-ascii", "newline"],
)
def test_bad_scope_names_are_refused(scope: str) -> None:
    with pytest.raises(ValueError, match="invalid scope name"):
        check_scope_names([scope])


def test_non_string_scope_is_refused() -> None:
    with pytest.raises(TypeError, match="scopes must be strings"):
        check_scope_names([b"a"])


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
