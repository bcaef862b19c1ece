"""_fetch and _discovery: the one hardened exchange with the IdP (the key source's GETs,
the client's token POSTs), its backoff formula, URL checks, and the one discovery."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

import httpx
import pytest

from resource_guard._discovery import DiscoveryError, Metadata, discover, discover_sync
from resource_guard._fetch import (
    JITTER_SPREAD,
    MAX_DOCUMENT_BYTES,
    Document,
    FetchError,
    Reply,
    UnreadableBody,
    backoff_delay,
    bare_request,
    check_url,
    fetch_json,
    is_loopback_host,
    parse_max_age,
    send_async,
    send_sync,
)

URL = "https://idp.example.test/jwks.json"
JWKS = b'{"keys": []}'


class Chunks(httpx.AsyncByteStream):
    """A streamed body (no Content-Length unless given) that records how much was read."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = chunks
        self.served = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            self.served += 1
            yield chunk


def client_for(
    handler: Callable[[httpx.Request], httpx.Response], *, follow_redirects: bool = False
) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.MockTransport(handler), follow_redirects=follow_redirects
    )


async def fetch(response: httpx.Response, *, max_bytes: int = MAX_DOCUMENT_BYTES) -> Document:
    async with client_for(lambda request: response) as client:
        return await fetch_json(client, URL, timeout=5, max_bytes=max_bytes)


def compress(data: bytes, wbits: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, wbits)
    return compressor.compress(data) + compressor.flush()


def split(data: bytes, size: int = 1024) -> list[bytes]:
    return [data[index : index + size] for index in range(0, len(data), size)]


GZIP, ZLIB = 16 + zlib.MAX_WBITS, zlib.MAX_WBITS


# -- what a good answer gives ----------------------------------------------------------


async def test_returns_the_json_object_and_max_age() -> None:
    response = httpx.Response(200, content=JWKS, headers={"Cache-Control": "max-age=120"})
    document = await fetch(response)
    assert document == Document({"keys": []}, 120.0)


async def test_asks_for_json_and_only_the_encodings_it_can_bound() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=JWKS)

    async with client_for(handler) as client:
        await fetch_json(client, URL, timeout=5)
    assert [request.method for request in seen] == ["GET"]
    assert seen[0].headers["Accept"] == "application/json"
    assert seen[0].headers["Accept-Encoding"] == "gzip, deflate"


async def test_a_shared_client_lends_no_credentials_headers_or_cookies() -> None:
    """A service's shared AsyncClient may carry its own auth: the IdP must never see it."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=JWKS)

    async with httpx.AsyncClient(
        transport=httpx.MockTransport(handler),
        auth=httpx.BasicAuth("svc", "s3cret"),
        headers={"X-Api-Key": "k-123"},
        cookies={"session": "abc"},
    ) as client:
        await fetch_json(client, URL, timeout=5)
    assert "authorization" not in seen[0].headers
    assert "x-api-key" not in seen[0].headers
    assert "cookie" not in seen[0].headers


async def test_a_streamed_body_is_read_in_chunks() -> None:
    chunks = split(b'{"keys": [], "pad": "' + b"x" * 5000 + b'"}')
    stream = Chunks(chunks)
    document = await fetch(httpx.Response(200, stream=stream))
    assert document.body["keys"] == []
    assert document.max_age is None
    assert stream.served == len(chunks) > 1


# -- status and redirects ----------------------------------------------------------------


@pytest.mark.parametrize("status", [201, 203, 204, 304, 400, 401, 404, 429, 500, 502, 503])
async def test_any_status_but_200_is_refused(status: int) -> None:
    with pytest.raises(FetchError, match=f" {status} instead of 200"):
        await fetch(httpx.Response(status, content=JWKS))


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("follow", [False, True], ids=["plain-client", "following-client"])
async def test_redirects_are_not_followed(status: int, follow: bool) -> None:
    """Even a shared client configured to follow redirects never reaches the target."""
    hosts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        if request.url.host == "idp.example.test":
            return httpx.Response(status, headers={"Location": "https://evil.example.test/k"})
        return httpx.Response(200, content=JWKS)

    async with client_for(handler, follow_redirects=follow) as client:
        with pytest.raises(FetchError, match=f"redirect \\(not followed\\) {status}"):
            await fetch_json(client, URL, timeout=5)
    assert hosts == ["idp.example.test"]


# -- size caps -------------------------------------------------------------------------------


def exactly(size: int) -> bytes:
    """A JSON object of exactly ``size`` bytes."""
    body = b'{"p":""}'
    return body[:6] + b"x" * (size - len(body)) + body[6:]


@pytest.mark.parametrize("streamed", [False, True], ids=["in-memory", "streamed"])
async def test_a_body_of_exactly_the_cap_is_accepted(streamed: bool) -> None:
    body = exactly(64)
    response = (
        httpx.Response(200, stream=Chunks(split(body, 10)))
        if streamed
        else httpx.Response(200, content=body)
    )
    assert (await fetch(response, max_bytes=64)).body == json.loads(body)


@pytest.mark.parametrize("streamed", [False, True], ids=["in-memory", "streamed"])
async def test_one_byte_over_the_cap_is_refused(streamed: bool) -> None:
    body = exactly(65)
    response = (
        httpx.Response(200, stream=Chunks(split(body, 10)))
        if streamed
        else httpx.Response(200, content=body)
    )
    with pytest.raises(FetchError, match="larger than 64 bytes"):
        await fetch(response, max_bytes=64)


async def test_a_declared_content_length_over_the_cap_is_refused_before_reading() -> None:
    stream = Chunks([b"{}"])
    response = httpx.Response(200, headers={"Content-Length": "262145"}, stream=stream)
    with pytest.raises(FetchError, match="larger than 262144 bytes"):
        await fetch(response)
    assert stream.served == 0


async def test_an_endless_stream_is_cut_at_the_cap() -> None:
    """No Content-Length: the cap is enforced while reading, not after."""
    endless = (b"x" * 1024 for _ in range(100_000))
    stream = Chunks(endless)
    with pytest.raises(FetchError, match="larger than 262144 bytes"):
        await fetch(httpx.Response(200, stream=stream))
    assert stream.served == MAX_DOCUMENT_BYTES // 1024 + 1


# -- content encodings ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "wbits"),
    [("gzip", GZIP), ("x-gzip", GZIP), ("deflate", ZLIB)],
)
async def test_compressed_bodies_are_inflated(encoding: str, wbits: int) -> None:
    body = compress(b'{"keys": [], "pad": "' + b"y" * 10_000 + b'"}', wbits)
    stream = Chunks(split(body, 16))
    response = httpx.Response(200, headers={"Content-Encoding": encoding}, stream=stream)
    assert (await fetch(response)).body["keys"] == []


@pytest.mark.parametrize(
    ("encoding", "wbits"),
    [("gzip", GZIP), ("deflate", ZLIB)],
)
async def test_a_compression_bomb_is_stopped_at_the_cap(encoding: str, wbits: int) -> None:
    """A few KiB that inflate to 8 MiB of valid JSON: refused without inflating it all."""
    bomb = compress(b'{"keys": [' + b" " * (8 << 20) + b"]}", wbits)
    assert len(bomb) < 16 * 1024
    stream = Chunks(split(bomb))
    response = httpx.Response(200, headers={"Content-Encoding": encoding}, stream=stream)
    with pytest.raises(FetchError, match="inflates to more than 262144 bytes"):
        await fetch(response)
    assert stream.served < len(split(bomb))


async def test_a_body_that_inflates_just_over_the_cap_is_refused() -> None:
    body = compress(exactly(65), GZIP)
    response = httpx.Response(200, headers={"Content-Encoding": "gzip"}, stream=Chunks([body]))
    with pytest.raises(FetchError, match="than 64 bytes"):
        await fetch(response, max_bytes=64)


async def test_a_corrupt_compressed_body_is_refused() -> None:
    response = httpx.Response(
        200, headers={"Content-Encoding": "gzip"}, stream=Chunks([b"\x1f\x8bnot gzip at all"])
    )
    with pytest.raises(FetchError, match="does not inflate"):
        await fetch(response)


@pytest.mark.parametrize("encoding", ["br", "zstd", "compress", "gzip, gzip", "rot13"])
async def test_an_unknown_content_encoding_is_refused(encoding: str) -> None:
    stream = Chunks([JWKS])
    response = httpx.Response(200, headers={"Content-Encoding": encoding}, stream=stream)
    with pytest.raises(FetchError, match="unsupported Content-Encoding"):
        await fetch(response)
    assert stream.served == 0


# -- the body must be a JSON object ----------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<html>login</html>",
        b'{"keys": [',
        b"\xef\xbb\xbf{}",
        b"[" * 100_000 + b"]" * 100_000,
        b'{"n": ' + b"1" * 5000 + b"}",
    ],
    ids=["empty", "html", "truncated", "utf8-bom", "deep-nesting", "huge-number"],
)
async def test_a_body_that_is_not_json_is_refused(body: bytes) -> None:
    with pytest.raises(FetchError, match="not JSON"):
        await fetch(httpx.Response(200, content=body))


@pytest.mark.parametrize(
    "body",
    [b'{"kid": "\xff"}', b'{"kid": "\xc0\xaf"}', b'{"kid": "\xed\xa0\x80"}'],
    ids=["stray-byte", "overlong", "surrogate"],
)
async def test_invalid_utf8_is_refused(body: bytes) -> None:
    with pytest.raises(FetchError, match="not JSON"):
        await fetch(httpx.Response(200, content=body))


@pytest.mark.parametrize("body", [b"[]", b'[{"keys": []}]', b"null", b"42", b'"keys"', b"true"])
async def test_json_that_is_not_an_object_is_refused(body: bytes) -> None:
    with pytest.raises(FetchError, match="not a JSON object"):
        await fetch(httpx.Response(200, content=body))


# -- transport failures and the overall deadline --------------------------------------------


async def test_a_transport_error_becomes_a_fetch_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async with client_for(handler) as client:
        with pytest.raises(FetchError, match="ConnectError: connection refused"):
            await fetch_json(client, URL, timeout=5)


@pytest.mark.parametrize(
    "error",
    [
        AttributeError("'NoneType' object has no attribute 'send'"),
        OSError("connection reset\nby peer"),
        RuntimeError("x" * 1000),
    ],
    ids=["attribute-error", "os-error", "long-message"],
)
async def test_an_unexpected_exception_from_the_http_stack_is_a_fetch_error(
    error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 11: an event loop's transport once raised AttributeError when the IdP closed
    the connection during connect. It is a failed fetch: a FetchError naming the exception
    type and a short one-line message; its traceback is logged at DEBUG only."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    caplog.set_level(logging.DEBUG)
    async with client_for(handler) as client:
        with pytest.raises(FetchError) as caught:
            await fetch_json(client, URL, timeout=5)
    message = str(caught.value)
    assert message.startswith(f"unexpected {type(error).__name__}: ")
    assert " ".join(str(error).split())[:40] in message
    assert "\n" not in message
    assert len(message) <= 200
    assert [record.levelno for record in caplog.records] == [logging.DEBUG]
    assert caplog.records[0].exc_info is not None


async def test_a_server_that_never_answers_meets_the_deadline() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        return httpx.Response(200, content=JWKS)  # pragma: no cover

    started = time.monotonic()
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(FetchError, match=r"no complete answer within 0\.2 s"):
            await asyncio.wait_for(fetch_json(client, URL, timeout=0.2), 5)
    assert time.monotonic() - started < 1


async def test_a_dripping_server_cannot_stretch_the_deadline() -> None:
    """One byte every 0.2 s never trips a per-read timeout; the overall deadline holds."""
    handlers: set[asyncio.Task[None]] = set()

    async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        body = b'{"keys": [' + b" " * 100 + b"]}"
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        head += b"Content-Length: %d\r\n\r\n" % len(body)
        try:
            await reader.readuntil(b"\r\n\r\n")
            for index in range(len(head + body)):
                writer.write((head + body)[index : index + 1])
                await writer.drain()
                await asyncio.sleep(0.2)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(drip, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient() as client:
            started = time.monotonic()
            with pytest.raises(FetchError, match="no complete answer within 1 s"):
                await asyncio.wait_for(
                    fetch_json(client, f"http://127.0.0.1:{port}/jwks", timeout=1), 5
                )
            elapsed = time.monotonic() - started
        assert 0.9 <= elapsed < 1.5
    finally:
        server.close()
        for task in handlers:
            task.cancel()
        for task in handlers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await server.wait_closed()


# -- URL checks ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://idp.example.test/jwks",
        "https://idp.example.test:8443/oauth2/default",
        "HTTPS://IDP.EXAMPLE.TEST/",
        "http://127.0.0.1:8080/jwks",
        "http://127.5.5.5/jwks",
        "http://[::1]:9000/jwks",
        "http://localhost/jwks",
        "http://LOCALHOST:1/",
    ],
)
def test_https_and_loopback_http_urls_are_accepted(url: str) -> None:
    assert check_url(url, "jwks_uri", allow_insecure_http=False) == url


@pytest.mark.parametrize(
    "url",
    [
        "http://idp.example.test/jwks",
        "http://10.0.0.1/jwks",
        "http://0.0.0.0/jwks",
        "http://localhost.example.test/jwks",
        "http://127.0.0.1.nip.io/jwks",
        "http://[::2]/jwks",
    ],
)
def test_plain_http_is_refused_unless_loopback(url: str) -> None:
    with pytest.raises(ValueError, match="jwks_uri must use https") as caught:
        check_url(url, "jwks_uri", allow_insecure_http=False)
    assert "allow_insecure_http=True" in str(caught.value)


def test_plain_http_is_accepted_when_the_user_opts_out() -> None:
    url = "http://idp.internal/jwks"
    assert check_url(url, "jwks_uri", allow_insecure_http=True) == url


@pytest.mark.parametrize("insecure", [False, True])
@pytest.mark.parametrize(
    "url",
    [
        "https://user:secret@idp.example.test/jwks",
        "https://user@idp.example.test/jwks",
        "https://:secret@idp.example.test/jwks",
        "http://user:secret@127.0.0.1/jwks",
        "http://user:secret@idp.example.test/jwks",
        "ftp://user:secret@idp.example.test/jwks",
    ],
)
def test_credentials_in_the_url_are_refused(url: str, insecure: bool) -> None:
    with pytest.raises(ValueError, match="must not carry credentials") as caught:
        check_url(url, "jwks_uri", allow_insecure_http=insecure)
    assert "secret" not in str(caught.value)


@pytest.mark.parametrize(
    "url",
    ["", "/jwks.json", "idp.example.test/jwks", "ftp://idp.example.test/jwks", "https:///jwks"],
    ids=["empty", "relative", "no-scheme", "ftp", "no-host"],
)
def test_urls_that_are_not_absolute_http_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="issuer must"):
        check_url(url, "issuer", allow_insecure_http=True)


@pytest.mark.parametrize(
    "url",
    [
        "https://idp.example.test:abc/jwks",
        "https://idp.example.test:99999/jwks",
        "https://idp.example.test/jw\nks",
        "https://idp.example.test/\x00",
        "https://[::1/jwks",
    ],
    ids=["port-not-a-number", "port-out-of-range", "newline", "nul", "broken-ipv6"],
)
def test_urls_that_http_cannot_use_are_refused_up_front(url: str) -> None:
    with pytest.raises(ValueError, match="jwks_uri is not a valid URL"):
        check_url(url, "jwks_uri", allow_insecure_http=False)


def test_an_invalid_url_with_credentials_is_not_echoed() -> None:
    with pytest.raises(ValueError, match="not a valid URL") as caught:
        check_url(
            "https://user:secret@idp.example.test:abc/", "jwks_uri", allow_insecure_http=False
        )
    assert "secret" not in str(caught.value)


async def test_a_url_httpx_refuses_becomes_a_fetch_error() -> None:
    async with client_for(lambda request: httpx.Response(200, content=JWKS)) as client:
        with pytest.raises(FetchError, match="InvalidURL"):
            await fetch_json(client, "https://idp.example.test:abc/jwks", timeout=5)


def test_a_non_string_url_is_refused() -> None:
    with pytest.raises(ValueError, match="issuer must be a non-empty URL string"):
        check_url(b"https://idp.example.test", "issuer", allow_insecure_http=False)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("127.0.0.1", True),
        ("127.255.0.9", True),
        ("::1", True),
        ("[::1]", True),
        (None, False),
        ("", False),
        ("128.0.0.1", False),
        ("localhost.", False),
        ("example.test", False),
    ],
)
def test_is_loopback_host(host: str | None, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


# -- Cache-Control -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("public", None),
        ("max-age=300", 300.0),
        ("public, max-age=300", 300.0),
        ("Public, MAX-AGE=60", 60.0),
        ('max-age="120"', 120.0),
        ("max-age = 45", None),
        ("max-age= 45 ", 45.0),
        ("max-age=0", 0.0),
        ("no-store", 0.0),
        ("no-cache", 0.0),
        ("no-cache, max-age=300", 0.0),
        ("max-age=300, no-store", 0.0),
        ("max-age=", None),
        ("max-age=abc", None),
        ("max-age=1.5", None),
        ("max-age=1e3", None),
        ("max-age=-5", None),
        ("max-age=+60", None),
        ("max-age=6_0", None),
        ("max-age=abc, max-age=90", 90.0),
        ("s-maxage=100", None),
        ("max-age=" + "9" * 400, 2.0**31),
        ("max-age=" + "9" * 5000, 2.0**31),
    ],
    ids=lambda value: repr(value)[:40],
)
def test_parse_max_age(value: str | None, expected: float | None) -> None:
    assert parse_max_age(value) == expected


async def test_an_absurd_max_age_does_not_spoil_the_document() -> None:
    """RFC 9111 §1.2.2: a delta-seconds too large to represent counts as 2**31."""
    response = httpx.Response(200, content=JWKS, headers={"Cache-Control": "max-age=1" + "0" * 400})
    assert (await fetch(response)).max_age == 2.0**31


# -- the one backoff formula -------------------------------------------------------------


@pytest.mark.parametrize(
    ("failures", "jitter", "delay"),
    [
        (1, 0.0, 10.0),
        (2, 0.0, 20.0),
        (5, 0.0, 160.0),
        (6, 0.0, 300.0),  # capped
        (1, 0.5, 12.5),
        (6, 0.999, 300.0 * (1 + JITTER_SPREAD * 0.999)),  # jitter stretches the cap too
        (0, 0.0, 10.0),  # never below base
    ],
)
def test_backoff_delay_doubles_caps_and_jitters(failures: int, jitter: float, delay: float) -> None:
    assert backoff_delay(failures, base=10.0, cap=300.0, jitter=jitter) == pytest.approx(delay)


def test_backoff_delay_stays_bounded_after_thousands_of_failures() -> None:
    assert backoff_delay(5000, base=1.0, cap=300.0, jitter=0.0) == 300.0


def test_backoff_delay_never_cuts_below_the_base() -> None:
    assert backoff_delay(3, base=600.0, cap=300.0, jitter=0.0) == 600.0


# -- the shared exchange: any method, any status -----------------------------------------


def test_a_bare_request_takes_nothing_from_the_client_and_refuses_bad_urls() -> None:
    request = bare_request("POST", URL, timeout=3, data={"grant_type": "client_credentials"})
    assert request.headers["Accept"] == "application/json"
    assert "authorization" not in request.headers
    assert "cookie" not in request.headers
    assert request.extensions["timeout"]["read"] == 3
    with pytest.raises(FetchError):
        bare_request("GET", "https://idp.example.test/\x00", timeout=3)


class EitherChunks(Chunks, httpx.SyncByteStream):
    """Chunks that a sync client can read too."""

    def __iter__(self) -> Iterator[bytes]:
        yield from self._chunks


def recording(
    status: int, body: bytes, seen: list[httpx.Request]
) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, stream=EitherChunks(split(body, 16)))

    return handler


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_send_posts_without_ambient_credentials_and_returns_any_status(mode: str) -> None:
    seen: list[httpx.Request] = []
    handler = recording(400, b'{"error": "invalid_client"}', seen)
    request = bare_request("POST", URL, timeout=5, data={"grant_type": "client_credentials"})
    options: dict[str, Any] = {
        "transport": httpx.MockTransport(handler),
        "auth": ("service", "its-own-secret"),
        "headers": {"X-Service": "own"},
    }
    if mode == "sync":
        with httpx.Client(**options) as sync_client:
            reply = send_sync(sync_client, request, timeout=5, max_bytes=1024)
    else:
        async with httpx.AsyncClient(**options) as async_client:
            reply = await send_async(async_client, request, timeout=5, max_bytes=1024)
    assert (reply.status_code, reply.body) == (400, b'{"error": "invalid_client"}')
    assert seen[0].method == "POST"
    assert seen[0].content == b"grant_type=client_credentials"
    assert "authorization" not in seen[0].headers
    assert "x-service" not in seen[0].headers


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_send_caps_the_body_with_an_unreadable_body_error(mode: str) -> None:
    handler = recording(200, b"x" * 100, [])
    request = bare_request("GET", URL, timeout=5)
    if mode == "sync":
        with (
            httpx.Client(transport=httpx.MockTransport(handler)) as sync_client,
            pytest.raises(UnreadableBody, match="larger than 64 bytes"),
        ):
            send_sync(sync_client, request, timeout=5, max_bytes=64)
    else:
        async with client_for(handler) as async_client:
            with pytest.raises(UnreadableBody, match="larger than 64 bytes"):
                await send_async(async_client, request, timeout=5, max_bytes=64)


def test_send_sync_turns_a_transport_error_into_a_fetch_error() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with (
        httpx.Client(transport=httpx.MockTransport(down)) as client,
        pytest.raises(FetchError, match=r"^ConnectError: connection refused$") as caught,
    ):
        send_sync(client, bare_request("GET", URL, timeout=5), timeout=5, max_bytes=64)
    assert not isinstance(caught.value, UnreadableBody)


# -- discovery (one plan for the key source and the client) ------------------------------

ISSUER = "https://idp.example.test/tenant"
OIDC = ISSUER + "/.well-known/openid-configuration"
RFC8414 = "https://idp.example.test/.well-known/oauth-authorization-server/tenant"


def reply(status: int, document: object) -> Reply:
    return Reply(status, httpx.Headers(), json.dumps(document).encode())


def scripted(outcomes: dict[str, Reply | FetchError], asked: list[str]) -> Callable[[str], Reply]:
    def get(url: str) -> Reply:
        asked.append(url)
        outcome = outcomes[url]
        if isinstance(outcome, FetchError):
            raise outcome
        return outcome

    return get


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_discovery_falls_back_to_rfc_8414_when_oidc_cannot_be_had(mode: str) -> None:
    asked: list[str] = []
    document = {"issuer": ISSUER, "jwks_uri": ISSUER + "/keys"}
    get = scripted({OIDC: FetchError("ConnectError: down"), RFC8414: reply(200, document)}, asked)
    if mode == "sync":
        metadata = discover_sync(ISSUER, get)
    else:

        async def aget(url: str) -> Reply:
            return get(url)

        metadata = await discover(ISSUER, aget)
    assert (metadata.url, metadata.document, asked) == (RFC8414, document, [OIDC, RFC8414])
    assert metadata.endpoint("jwks_uri", allow_insecure_http=False) == ISSUER + "/keys"


def test_discovery_stops_at_a_document_naming_another_issuer() -> None:
    asked: list[str] = []
    get = scripted({OIDC: reply(200, {"issuer": "https://evil.test"})}, asked)
    with pytest.raises(DiscoveryError) as caught:
        discover_sync(ISSUER, get)
    assert asked == [OIDC]
    assert caught.value.reasons == (
        f"{OIDC}: its issuer differs from the configured issuer (the document names another "
        "issuer, 'https://evil.test'); refusing it",
    )


def test_discovery_reports_every_location_when_none_is_usable() -> None:
    get = scripted({OIDC: reply(302, {}), RFC8414: reply(200, ["not", "an", "object"])}, [])
    with pytest.raises(DiscoveryError) as caught:
        discover_sync(ISSUER, get)
    assert str(caught.value) == (
        f"discovery failed: {OIDC}: HTTP 302 (a redirect, not followed); "
        f"{RFC8414}: not a JSON object"
    )
    assert isinstance(caught.value, FetchError)


@pytest.mark.parametrize(
    ("value", "reason"),
    [(None, "has no 'token_endpoint'"), ("http://idp.example.test/token", "must use https")],
)
def test_a_discovered_endpoint_is_checked_like_a_configured_one(value: object, reason: str) -> None:
    metadata = Metadata(OIDC, {"issuer": ISSUER, "token_endpoint": value})
    with pytest.raises(DiscoveryError, match=reason):
        metadata.endpoint("token_endpoint", allow_insecure_http=False)


async def test_keeps_the_date_header_for_clock_skew_diagnosis() -> None:
    date = "Sun, 06 Nov 1994 08:49:37 GMT"
    document = await fetch(httpx.Response(200, content=JWKS, headers={"Date": date}))
    assert (document.body, document.date) == ({"keys": []}, date)
    assert (await fetch(httpx.Response(200, content=JWKS))).date is None
