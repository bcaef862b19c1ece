"""ClientCredentialsAuth against a misbehaving token endpoint: error mapping, bounded retries,
reply validation, size caps, deadlines, and token-endpoint discovery."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from resource_guard.client import ClientCredentialsAuth
from resource_guard.client._http import RetryPolicy
from resource_guard.client._token import safe_text
from resource_guard.exceptions import TokenRequestError
from resource_guard.testing import FakeClock
from tests.client_support import (
    CLIENT_ID,
    ISSUER,
    SECRET,
    TOKEN_URL,
    TokenServer,
    json_reply,
    make_auth,
)


async def fetch(mode: str, auth: ClientCredentialsAuth) -> str:
    """Obtain a token through the sync or the async path."""
    return auth.get_token() if mode == "sync" else await auth.aget_token()


async def failure(mode: str, auth: ClientCredentialsAuth) -> TokenRequestError:
    with pytest.raises(TokenRequestError) as caught:
        await fetch(mode, auth)
    return caught.value


def jwt_with(claims: dict[str, Any]) -> str:
    def part(value: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256'})}.{part(claims)}.c2ln"


# -- error replies ----------------------------------------------------------------------------

ERROR_REPLIES = [
    pytest.param(
        lambda: json_reply(
            401, {"error": "invalid_client", "error_description": "bad credentials"}
        ),
        ("invalid_client", "bad credentials", 401),
        id="invalid-client",
    ),
    pytest.param(
        lambda: json_reply(400, {"error": "invalid_scope"}),
        ("invalid_scope", None, 400),
        id="invalid-scope-without-description",
    ),
    pytest.param(
        lambda: httpx.Response(403, text="<html>Forbidden</html>"),
        (None, None, 403),
        id="html-body",
    ),
    pytest.param(
        lambda: json_reply(400, {"error": 7, "error_description": ["x"]}),
        (None, None, 400),
        id="fields-of-the-wrong-type",
    ),
    pytest.param(
        lambda: json_reply(200, {"error": "access_denied"}),
        ("access_denied", None, 200),
        id="error-in-a-200",
    ),
    pytest.param(
        lambda: json_reply(
            400, {"error": "invalid_request", "error_description": "bad\r\nheader\x00"}
        ),
        ("invalid_request", "bad??header?", 400),
        id="control-characters-replaced",
    ),
]


@pytest.mark.parametrize(("reply", "expected"), ERROR_REPLIES)
async def test_error_replies_become_token_request_errors(
    mode: str,
    server: TokenServer,
    clock: FakeClock,
    reply: Callable[[], httpx.Response],
    expected: tuple[str | None, str | None, int],
) -> None:
    server.script.append(reply())

    error = await failure(mode, make_auth(server, clock))

    assert (error.error, error.error_description, error.status_code) == expected
    assert error.code == "token_request_failed"
    assert "idp.test/token" in error.message


async def test_the_message_names_the_error_and_description(
    server: TokenServer, clock: FakeClock
) -> None:
    server.script.append(json_reply(401, {"error": "invalid_client", "error_description": "no"}))

    error = await failure("async", make_auth(server, clock))

    assert str(error) == (
        "the token endpoint https://idp.test/token answered HTTP 401: invalid_client (no)"
    )


@pytest.mark.parametrize("status", [400, 401, 403, 404, 429])
async def test_4xx_is_not_retried(
    mode: str, server: TokenServer, clock: FakeClock, status: int
) -> None:
    server.script.append(json_reply(status, {"error": "nope"}))

    await failure(mode, make_auth(server, clock, retries=3))

    assert len(server.token_requests) == 1


async def test_5xx_is_retried_a_bounded_number_of_times(
    mode: str, server: TokenServer, clock: FakeClock
) -> None:
    server.script.extend(json_reply(503, {"error": "temporarily_unavailable"}) for _ in range(9))
    auth = make_auth(server, clock, retries=3)

    error = await failure(mode, auth)

    assert len(server.token_requests) == 4
    assert (error.error, error.status_code) == ("temporarily_unavailable", 503)


async def test_a_5xx_then_a_success_yields_the_token(
    mode: str, server: TokenServer, clock: FakeClock
) -> None:
    server.script.append(httpx.Response(502))

    assert await fetch(mode, make_auth(server, clock)) == "tok-1"
    assert len(server.token_requests) == 2


async def test_network_errors_are_retried_then_reported(
    mode: str, server: TokenServer, clock: FakeClock
) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    server.script.extend([refuse] * 3)

    error = await failure(mode, make_auth(server, clock, retries=2))

    assert len(server.token_requests) == 3
    assert error.status_code is None
    assert "ConnectError: connection refused" in error.message


async def test_retries_back_off_exponentially_with_jitter(
    mode: str, server: TokenServer, clock: FakeClock
) -> None:
    server.script.extend(httpx.Response(500) for _ in range(4))
    auth = make_auth(server, clock, retries=3, retry_backoff=0.4)
    delays: list[float] = []

    async def record_async(seconds: float) -> None:
        delays.append(seconds)

    auth._fetcher.sleep = delays.append
    auth._fetcher.async_sleep = record_async

    await failure(mode, auth)

    assert len(delays) == 3
    for attempt, delay in enumerate(delays):
        assert 0.2 * 2**attempt <= delay <= 0.4 * 2**attempt


async def test_retry_warnings_are_logged_without_secrets(
    server: TokenServer, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    server.script.append(httpx.Response(503))

    with caplog.at_level("DEBUG", logger="resource_guard.client"):
        await fetch("async", make_auth(server, clock))

    assert "retry 1 of 2" in caplog.text
    assert SECRET not in caplog.text
    assert "tok-1" not in caplog.text


# -- success replies that are not usable ------------------------------------------------------

BAD_SUCCESS_BODIES = [
    pytest.param(
        {"token_type": "Bearer", "expires_in": 60}, "no usable access_token", id="no-token"
    ),
    pytest.param({"access_token": 42, "token_type": "Bearer"}, "no usable", id="token-not-str"),
    pytest.param({"access_token": "", "token_type": "Bearer"}, "no usable", id="empty-token"),
    pytest.param(
        {"access_token": "a\r\nX-Evil: 1", "token_type": "Bearer"}, "no usable", id="header-split"
    ),
    pytest.param({"access_token": "a b", "token_type": "Bearer"}, "no usable", id="space"),
    pytest.param({"access_token": "abc"}, "no token_type", id="no-type"),
    pytest.param({"access_token": "abc", "token_type": "DPoP"}, "'DPoP'", id="dpop"),
    pytest.param({"access_token": "abc", "token_type": "mac"}, "not a Bearer", id="mac"),
    pytest.param({"access_token": "abc", "token_type": None}, "no token_type", id="null-type"),
    *(
        pytest.param(
            {"access_token": "abc", "token_type": "Bearer", "expires_in": value},
            "invalid expires_in",
            id=f"expires_in-{label}",
        )
        for label, value in [
            ("zero", 0),
            ("negative", -5),
            ("bool", True),
            ("text", "soon"),
            ("negative-text", "-1"),
            ("float-text", "1.5"),
            ("nan", float("nan")),
            ("infinity", float("inf")),
            ("centuries", 10**12),
            ("beyond-float", 10**400),
            ("beyond-float-text", "9" * 400),
            ("list", [60]),
        ]
    ),
]


@pytest.mark.parametrize(("body", "fragment"), BAD_SUCCESS_BODIES)
async def test_unusable_success_replies_are_errors(
    mode: str, server: TokenServer, clock: FakeClock, body: dict[str, Any], fragment: str
) -> None:
    server.script.append(json_reply(200, body))

    error = await failure(mode, make_auth(server, clock))

    assert fragment in error.message
    assert error.status_code == 200
    assert len(server.token_requests) == 1


@pytest.mark.parametrize(
    "reply",
    [
        lambda: httpx.Response(200, text="access_token=abc&token_type=bearer"),
        lambda: httpx.Response(200, json=["abc"]),
        lambda: httpx.Response(200, content=b"\xff\xfe"),
    ],
    ids=["form-encoded", "json-list", "not-utf8"],
)
async def test_a_success_reply_that_is_not_a_json_object_is_an_error(
    mode: str, server: TokenServer, clock: FakeClock, reply: Callable[[], httpx.Response]
) -> None:
    server.script.append(reply())

    error = await failure(mode, make_auth(server, clock))

    assert "not a JSON object" in error.message


@pytest.mark.parametrize("token_type", ["bearer", "BEARER", "Bearer"])
async def test_token_type_is_case_insensitive(
    server: TokenServer, clock: FakeClock, token_type: str
) -> None:
    server.script.append(json_reply(200, {"access_token": "abc", "token_type": token_type}))

    assert await fetch("async", make_auth(server, clock)) == "abc"


@pytest.mark.parametrize(
    ("expires_in", "lifetime"),
    [(120, 120.0), ("3599", 3599.0), (90.5, 90.5)],
    ids=["int", "digit-string", "float"],
)
async def test_expires_in_sets_the_lifetime(
    server: TokenServer, clock: FakeClock, expires_in: object, lifetime: float
) -> None:
    server.expires_in = expires_in
    auth = make_auth(server, clock, refresh_skew=0)
    await fetch("async", auth)

    clock.advance(lifetime - 0.01)
    await fetch("async", auth)
    assert len(server.token_requests) == 1
    clock.advance(0.01)
    await fetch("async", auth)
    assert len(server.token_requests) == 2


@pytest.mark.parametrize(
    ("access_token", "lifetime"),
    [
        (jwt_with({"exp": 1_800_000_000 + 120}), 120.0),
        (jwt_with({"exp": 1_800_000_000 - 5}), 300.0),
        (jwt_with({"exp": True}), 300.0),
        (jwt_with({"sub": "x"}), 300.0),
        ("a.b.c", 300.0),
        ("a.bm90LWpzb24.c", 300.0),
        ("opaque-token", 300.0),
    ],
    ids=[
        "jwt-exp",
        "jwt-already-expired",
        "jwt-bool-exp",
        "jwt-no-exp",
        "bad-base64",
        "payload-not-json",
        "opaque",
    ],
)
async def test_without_expires_in_the_jwt_exp_or_a_default_sets_the_lifetime(
    server: TokenServer, clock: FakeClock, access_token: str, lifetime: float
) -> None:
    server.script.append(json_reply(200, {"access_token": access_token, "token_type": "Bearer"}))
    auth = make_auth(server, clock, refresh_skew=0)
    await fetch("async", auth)

    clock.advance(lifetime - 0.01)
    assert await fetch("async", auth) == access_token
    clock.advance(0.01)
    assert await fetch("async", auth) == "tok-1"


# -- size caps, encodings, deadlines ----------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        lambda: httpx.Response(200, content=b" " * (64 * 1024 + 1)),
        lambda: httpx.Response(
            200, headers={"Content-Length": str(10**9)}, stream=httpx.ByteStream(b"{}")
        ),
        lambda: httpx.Response(200, stream=httpx.ByteStream(b" " * (64 * 1024 + 1))),
        lambda: httpx.Response(
            200,
            headers={"Content-Encoding": "gzip"},
            stream=httpx.ByteStream(gzip.compress(b" " * (1024 * 1024))),
        ),
        lambda: httpx.Response(
            200, headers={"Content-Encoding": "br"}, stream=httpx.ByteStream(b"x")
        ),
    ],
    ids=["in-memory", "declared-length", "streamed", "gzip-bomb", "unknown-encoding"],
)
async def test_oversized_or_undecodable_replies_are_refused_without_retry(
    mode: str, server: TokenServer, clock: FakeClock, reply: Callable[[], httpx.Response]
) -> None:
    server.script.append(reply())

    error = await failure(mode, make_auth(server, clock))

    assert len(server.token_requests) == 1
    assert error.status_code is None


async def test_a_gzip_encoded_reply_is_read(
    mode: str, server: TokenServer, clock: FakeClock
) -> None:
    body = json.dumps({"access_token": "zipped", "token_type": "Bearer"}).encode()
    server.script.append(
        httpx.Response(
            200, headers={"Content-Encoding": "gzip"}, stream=httpx.ByteStream(gzip.compress(body))
        )
    )

    assert await fetch(mode, make_auth(server, clock)) == "zipped"


class SlowStream(httpx.SyncByteStream):
    def __iter__(self) -> Iterator[bytes]:
        for _ in range(50):
            time.sleep(0.01)
            yield b" "


def test_a_sync_reply_dripping_past_the_deadline_is_abandoned(
    server: TokenServer, clock: FakeClock
) -> None:
    server.script.append(httpx.Response(200, stream=SlowStream()))
    auth = make_auth(server, clock, timeout=0.05, retries=0)
    started = time.monotonic()

    with pytest.raises(TokenRequestError, match=r"within 0\.05 s"):
        auth.get_token()

    assert time.monotonic() - started < 0.4


async def test_an_async_reply_past_the_deadline_is_abandoned(clock: FakeClock) -> None:
    server = TokenServer(delay=5)
    auth = make_auth(server, clock, timeout=0.05, retries=0)
    started = time.monotonic()

    with pytest.raises(TokenRequestError, match=r"within 0\.05 s"):
        await auth.aget_token()

    assert time.monotonic() - started < 1


# -- discovery --------------------------------------------------------------------------------


def metadata(issuer: str = ISSUER, token_endpoint: str = TOKEN_URL) -> dict[str, str]:
    return {"issuer": issuer, "token_endpoint": token_endpoint}


async def test_the_issuer_s_openid_configuration_names_the_token_endpoint(
    mode: str, server: TokenServer, clock: FakeClock
) -> None:
    server.discovery["/.well-known/openid-configuration"] = metadata()
    auth = make_auth(server, clock, issuer=ISSUER)
    assert auth.token_url is None

    for _ in range(3):
        assert await fetch(mode, auth) == "tok-1"

    assert auth.token_url == TOKEN_URL
    assert server.discovery_requests == ["/.well-known/openid-configuration"]


async def test_discovery_falls_back_to_rfc_8414_with_the_path_inserted(
    mode: str, server: TokenServer, clock: FakeClock
) -> None:
    issuer = f"{ISSUER}/tenant-a/"
    server.discovery["/.well-known/oauth-authorization-server/tenant-a"] = metadata(issuer)

    assert await fetch(mode, make_auth(server, clock, issuer=issuer)) == "tok-1"
    assert server.discovery_requests == [
        "/tenant-a/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server/tenant-a",
    ]


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (metadata(issuer="https://evil.test"), "issuer differs"),
        (metadata(issuer=ISSUER + "/"), "issuer differs"),
        ({"issuer": ISSUER}, "no token_endpoint"),
        (metadata(token_endpoint="http://idp.test/token"), "must use https"),
        ({"issuer": ISSUER, "token_endpoint": ["x"]}, "no token_endpoint"),
    ],
    ids=["foreign-issuer", "issuer-trailing-slash", "no-endpoint", "plain-http", "not-a-string"],
)
async def test_an_unusable_discovery_document_is_refused(
    mode: str, server: TokenServer, clock: FakeClock, document: dict[str, Any], reason: str
) -> None:
    server.discovery["/.well-known/openid-configuration"] = document
    server.discovery["/.well-known/oauth-authorization-server"] = document

    error = await failure(mode, make_auth(server, clock, issuer=ISSUER))

    assert reason in error.message
    assert "could not discover the token endpoint of issuer 'https://idp.test'" in error.message
    assert server.token_requests == []


async def test_a_discovery_reply_that_is_not_json_is_refused(
    server: TokenServer, clock: FakeClock
) -> None:
    server.discovery["/.well-known/openid-configuration"] = ["not", "an", "object"]

    error = await failure("sync", make_auth(server, clock, issuer=ISSUER))

    assert "openid-configuration: not a JSON object" in error.message


async def test_discovery_reports_every_attempt(
    mode: str, server: TokenServer, clock: FakeClock
) -> None:
    server.discovery["/.well-known/oauth-authorization-server"] = {"not": "metadata"}

    error = await failure(mode, make_auth(server, clock, issuer=ISSUER))

    assert "https://idp.test/.well-known/openid-configuration: HTTP 404" in error.message
    assert "oauth-authorization-server: its issuer differs" in error.message


async def test_discovery_network_errors_are_retried_and_reported(
    mode: str, clock: FakeClock
) -> None:
    attempts: list[str] = []

    def down(request: httpx.Request) -> httpx.Response:
        attempts.append(request.url.path)
        raise httpx.ConnectTimeout("timed out", request=request)

    auth = ClientCredentialsAuth(
        issuer=ISSUER,
        client_id=CLIENT_ID,
        client_secret=SECRET,
        clock=clock,
        retries=1,
        retry_backoff=0.0,
        http_client=(
            httpx.Client(transport=httpx.MockTransport(down)),
            httpx.AsyncClient(transport=httpx.MockTransport(down)),
        ),
    )

    error = await failure(mode, auth)

    assert len(attempts) == 4
    assert error.message.count("ConnectTimeout") == 2


async def test_a_discovered_http_endpoint_is_allowed_with_the_opt_out(
    server: TokenServer, clock: FakeClock
) -> None:
    server.discovery["/.well-known/openid-configuration"] = metadata(
        token_endpoint="http://idp.test/token"
    )
    auth = make_auth(server, clock, issuer=ISSUER, allow_insecure_http=True)

    assert await auth.aget_token() == "tok-1"
    assert auth.token_url == "http://idp.test/token"
    assert server.token_requests[0].url.scheme == "http"


def test_concurrent_first_async_callers_discover_once(
    server: TokenServer, clock: FakeClock
) -> None:
    server.discovery["/.well-known/openid-configuration"] = metadata()
    auth = make_auth(server, clock, issuer=ISSUER)

    async def many() -> list[str]:
        return await asyncio.gather(*(auth.aget_token() for _ in range(20)))

    assert asyncio.run(many()) == ["tok-1"] * 20
    assert len(server.discovery_requests) == 1


@pytest.mark.parametrize(
    ("value", "secret", "expected"),
    [
        ("a secret b", "secret", "a [redacted] b"),
        ("body: client_secret=p%40ss+w%2Brd", "p@ss w+rd", "body: client_secret=[redacted]"),
        ("path p%40ss%20w%2Brd", "p@ss w+rd", "path [redacted]"),
        ("plain", "", "plain"),
        (None, "x", None),
    ],
    ids=["redacted", "form-encoded", "percent-encoded", "no-secret-to-redact", "not-a-string"],
)
def test_server_text_is_made_safe_for_messages(
    value: object, secret: str, expected: str | None
) -> None:
    assert safe_text(value, secret=secret) == expected


async def test_a_foreign_issuer_ends_discovery_without_trying_rfc_8414(
    mode: str, server: TokenServer, clock: FakeClock
) -> None:
    """The client and the key source share one discovery: a document naming another issuer
    is a mix-up, not a missing document, so no other location is asked."""
    server.discovery["/.well-known/openid-configuration"] = metadata(issuer="https://evil.test")
    server.discovery["/.well-known/oauth-authorization-server"] = metadata()

    error = await failure(mode, make_auth(server, clock, issuer=ISSUER))

    assert server.discovery_requests == ["/.well-known/openid-configuration"]
    assert "names another issuer, 'https://evil.test'" in error.message
    assert server.token_requests == []


@pytest.mark.parametrize(
    ("jitter", "delays"),
    [(0.0, [0.4, 0.8, 1.6, 3.2, 6.4, 10.0 / 1.5]), (0.999999, [0.6, 1.2, 2.4, 4.8, 9.6, 10.0])],
)
def test_retry_delays_follow_the_shared_backoff_formula(jitter: float, delays: list[float]) -> None:
    policy = RetryPolicy(retries=6, backoff=0.6, jitter=lambda: jitter)
    assert [policy.delay(attempt) for attempt in range(6)] == pytest.approx(delays, rel=1e-5)
