"""ClientCredentialsAuth: token reuse, refresh, single-flight, 401 handling, request shape."""

from __future__ import annotations

import asyncio
import base64
import logging
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

from resource_guard.client import ClientCredentialsAuth
from resource_guard.exceptions import TokenRequestError
from resource_guard.testing import FakeClock
from tests.client_support import (
    API,
    CLIENT_ID,
    SECRET,
    TOKEN_URL,
    StreamingTransport,
    TokenServer,
    json_reply,
    make_auth,
)


def send_sync(
    transport: httpx.BaseTransport, auth: ClientCredentialsAuth, method: str, **kwargs: Any
) -> httpx.Response:
    with httpx.Client(transport=transport, auth=auth) as client:
        return client.request(method, API, **kwargs)


async def send(
    mode: str, auth: ClientCredentialsAuth, server: TokenServer, **kwargs: Any
) -> httpx.Response:
    """One request to the resource server through a client of the given kind."""
    method = kwargs.pop("method", "GET")
    if mode == "sync":
        return send_sync(server.transport(), auth, method, **kwargs)
    async with httpx.AsyncClient(transport=server.async_transport(), auth=auth) as client:
        return await client.request(method, API, **kwargs)


# -- reuse, refresh and single-flight ---------------------------------------------------------


async def test_request_carries_the_bearer_token(
    mode: str, server: TokenServer, clock: FakeClock
) -> None:
    response = await send(mode, make_auth(server, clock), server)

    assert response.status_code == 200
    assert server.presented == ["Bearer tok-1"]


def test_a_thousand_sync_requests_reuse_one_token(server: TokenServer, clock: FakeClock) -> None:
    auth = make_auth(server, clock)
    with httpx.Client(transport=server.transport(), auth=auth) as client:
        statuses = {client.get(API).status_code for _ in range(1000)}

    assert statuses == {200}
    assert len(server.token_requests) == 1
    assert len(server.resource_requests) == 1000


async def test_a_thousand_async_requests_reuse_one_token(
    server: TokenServer, clock: FakeClock
) -> None:
    auth = make_auth(server, clock)
    async with httpx.AsyncClient(transport=server.async_transport(), auth=auth) as client:
        statuses = {(await client.get(API)).status_code for _ in range(1000)}

    assert statuses == {200}
    assert len(server.token_requests) == 1


async def test_fifty_concurrent_async_first_requests_make_one_token_request(
    clock: FakeClock,
) -> None:
    server = TokenServer(delay=0.05)
    auth = make_auth(server, clock)
    async with httpx.AsyncClient(transport=server.async_transport(), auth=auth) as client:
        responses = await asyncio.gather(*(client.get(API) for _ in range(50)))

    assert {response.status_code for response in responses} == {200}
    assert len(server.token_requests) == 1


def test_fifty_concurrent_threads_make_one_token_request(clock: FakeClock) -> None:
    server = TokenServer(delay=0.05)
    auth = make_auth(server, clock)
    barrier = threading.Barrier(50, timeout=5)
    statuses: list[int] = []

    def worker(client: httpx.Client) -> None:
        barrier.wait()
        statuses.append(client.get(API).status_code)

    with httpx.Client(transport=server.transport(), auth=auth) as client:
        threads = [threading.Thread(target=worker, args=(client,)) for _ in range(50)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)

    assert statuses == [200] * 50
    assert len(server.token_requests) == 1


def test_one_auth_serves_several_event_loops(clock: FakeClock) -> None:
    """Each loop gets its own lock; the token fetched in the first loop serves the second."""
    server = TokenServer(delay=0.01)
    auth = make_auth(server, clock)

    async def burst() -> set[int]:
        async with httpx.AsyncClient(transport=server.async_transport(), auth=auth) as client:
            responses = await asyncio.gather(*(client.get(API) for _ in range(10)))
        return {response.status_code for response in responses}

    assert asyncio.run(burst()) == {200}
    clock.advance(3600)
    assert asyncio.run(burst()) == {200}
    assert len(server.token_requests) == 2


@pytest.mark.parametrize(
    ("elapsed", "token_requests"),
    [(3569, 1), (3570, 2), (4000, 2)],
    ids=["before-the-skew", "at-the-skew", "after-expiry"],
)
async def test_the_token_is_refreshed_refresh_skew_seconds_before_expiry(
    mode: str, server: TokenServer, clock: FakeClock, elapsed: float, token_requests: int
) -> None:
    auth = make_auth(server, clock, refresh_skew=30)
    await send(mode, auth, server)
    clock.advance(elapsed)

    response = await send(mode, auth, server)

    assert response.status_code == 200
    assert len(server.token_requests) == token_requests


async def test_the_skew_is_at_most_half_of_a_short_lifetime(
    server: TokenServer, clock: FakeClock
) -> None:
    server.expires_in = 20
    auth = make_auth(server, clock, refresh_skew=30)
    await send("async", auth, server)
    clock.advance(9)
    await send("async", auth, server)
    assert len(server.token_requests) == 1
    clock.advance(1)
    await send("async", auth, server)
    assert len(server.token_requests) == 2


async def test_a_failed_refresh_keeps_serving_the_still_valid_token(
    mode: str, server: TokenServer, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    auth = make_auth(server, clock, retries=0)
    await send(mode, auth, server)
    clock.advance(3590)
    server.script.append(json_reply(503, {"error": "temporarily_unavailable"}))

    with caplog.at_level(logging.WARNING, logger="resource_guard.client"):
        response = await send(mode, auth, server)
        again = await send(mode, auth, server)

    assert response.status_code == again.status_code == 200
    assert server.presented[-1] == "Bearer tok-1"
    assert len(server.token_requests) == 2, "the next refresh waits a few seconds"
    assert "using the current one" in caplog.text
    clock.advance(6)
    await send(mode, auth, server)
    assert server.presented[-1] == "Bearer tok-2"


async def test_an_expired_token_is_not_served_when_the_refresh_fails(
    mode: str, server: TokenServer, clock: FakeClock
) -> None:
    auth = make_auth(server, clock, retries=0)
    await send(mode, auth, server)
    clock.advance(3600)
    server.script.append(json_reply(503, {"error": "temporarily_unavailable"}))

    with pytest.raises(TokenRequestError) as caught:
        await send(mode, auth, server)

    assert caught.value.status_code == 503
    assert len(server.resource_requests) == 1


async def test_concurrent_async_callers_share_one_failed_token_request(clock: FakeClock) -> None:
    server = TokenServer(delay=0.05)
    server.script.append(json_reply(400, {"error": "invalid_scope"}))
    auth = make_auth(server, clock)
    async with httpx.AsyncClient(transport=server.async_transport(), auth=auth) as client:
        results = await asyncio.gather(
            *(client.get(API) for _ in range(20)), return_exceptions=True
        )

    assert all(isinstance(result, TokenRequestError) for result in results)
    assert {result.error for result in results if isinstance(result, TokenRequestError)} == {
        "invalid_scope"
    }
    assert len({id(result) for result in results}) == 20, "each caller gets its own exception"
    assert len(server.token_requests) == 1


def test_concurrent_threads_share_one_failed_token_request(clock: FakeClock) -> None:
    server = TokenServer(delay=0.05)
    server.script.append(json_reply(401, {"error": "invalid_client"}))
    auth = make_auth(server, clock)
    barrier = threading.Barrier(10, timeout=5)
    errors: list[str | None] = []

    def worker() -> None:
        barrier.wait()
        try:
            auth.get_token()
        except TokenRequestError as error:
            errors.append(error.error)

    threads = [threading.Thread(target=worker) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert errors == ["invalid_client"] * 10
    assert len(server.token_requests) == 1


async def test_a_new_caller_after_a_failure_tries_again(
    mode: str, server: TokenServer, clock: FakeClock
) -> None:
    server.script.append(json_reply(400, {"error": "invalid_request"}))
    auth = make_auth(server, clock)
    with pytest.raises(TokenRequestError):
        await send(mode, auth, server)

    response = await send(mode, auth, server)

    assert response.status_code == 200
    assert len(server.token_requests) == 2


async def test_get_token_returns_the_cached_access_token(
    server: TokenServer, clock: FakeClock
) -> None:
    auth = make_auth(server, clock)

    assert auth.get_token() == "tok-1"
    assert await auth.aget_token() == "tok-1"
    assert len(server.token_requests) == 1


# -- 401 from the resource server -------------------------------------------------------------


async def test_a_401_fetches_one_new_token_and_retries_once(
    mode: str, server: TokenServer, clock: FakeClock
) -> None:
    auth = make_auth(server, clock)
    await send(mode, auth, server)
    server.accepted = {"tok-2"}

    response = await send(mode, auth, server)

    assert response.status_code == 200
    assert len(server.token_requests) == 2
    assert server.presented[1:] == ["Bearer tok-1", "Bearer tok-2"]


async def test_a_401_never_loops(mode: str, server: TokenServer, clock: FakeClock) -> None:
    server.accepted = set()
    auth = make_auth(server, clock)

    response = await send(mode, auth, server)

    assert response.status_code == 401
    assert len(server.resource_requests) == 2
    assert len(server.token_requests) == 2


async def test_another_401_within_the_cooldown_fetches_no_token(
    mode: str, server: TokenServer, clock: FakeClock
) -> None:
    server.accepted = set()
    auth = make_auth(server, clock, cooldown=10)
    await send(mode, auth, server)

    response = await send(mode, auth, server)

    assert response.status_code == 401
    assert len(server.resource_requests) == 3, "no retry either"
    assert len(server.token_requests) == 2
    clock.advance(10)
    await send(mode, auth, server)
    assert len(server.token_requests) == 3


async def test_refetch_cooldown_still_sets_the_cooldown(
    mode: str, server: TokenServer, clock: FakeClock
) -> None:
    """The deprecated spelling of ``cooldown=`` keeps its meaning: here 60 s, not 10."""
    server.accepted = set()
    with pytest.warns(DeprecationWarning, match="^refetch_cooldown= is deprecated"):
        auth = make_auth(server, clock, refetch_cooldown=60)
    await send(mode, auth, server)
    clock.advance(30)

    await send(mode, auth, server)

    assert len(server.token_requests) == 2


async def test_a_401_after_another_caller_refreshed_reuses_its_token(clock: FakeClock) -> None:
    server = TokenServer(delay=0.02)
    server.resource_delay = 0.02
    auth = make_auth(server, clock)
    assert await auth.aget_token() == "tok-1"
    server.accepted = {"tok-2"}

    async with httpx.AsyncClient(transport=server.async_transport(), auth=auth) as client:
        responses = await asyncio.gather(*(client.get(API) for _ in range(10)))

    assert {response.status_code for response in responses} == {200}
    assert len(server.token_requests) == 2


def test_a_401_after_another_thread_refreshed_reuses_its_token(clock: FakeClock) -> None:
    server = TokenServer(delay=0.02)
    server.resource_delay = 0.02
    auth = make_auth(server, clock)
    assert auth.get_token() == "tok-1"
    server.accepted = {"tok-2"}
    statuses: list[int] = []

    def worker(client: httpx.Client) -> None:
        statuses.append(client.get(API).status_code)

    with httpx.Client(transport=server.transport(), auth=auth) as client:
        threads = [threading.Thread(target=worker, args=(client,)) for _ in range(10)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)

    assert statuses == [200] * 10
    assert len(server.token_requests) == 2


async def test_a_streamed_body_is_not_replayed_but_the_token_is_replaced(
    mode: str, server: TokenServer, clock: FakeClock
) -> None:
    auth = make_auth(server, clock)
    await send(mode, auth, server)
    server.accepted = {"tok-2"}

    async def chunks() -> Any:
        yield b"payload"

    def sync_chunks() -> Iterator[bytes]:
        yield b"payload"

    transport = StreamingTransport(server)
    if mode == "sync":
        response = send_sync(transport, auth, "POST", content=sync_chunks())
    else:
        async with httpx.AsyncClient(transport=transport, auth=auth) as client:
            response = await client.post(API, content=chunks())

    assert response.status_code == 401
    assert len(server.token_requests) == 1
    assert (await send(mode, auth, server)).status_code == 200
    assert len(server.token_requests) == 2


async def test_a_failed_refetch_after_a_401_raises(
    mode: str, server: TokenServer, clock: FakeClock
) -> None:
    auth = make_auth(server, clock)
    await send(mode, auth, server)
    server.accepted = set()
    server.script.append(json_reply(401, {"error": "invalid_client"}))

    with pytest.raises(TokenRequestError) as caught:
        await send(mode, auth, server)

    assert caught.value.error == "invalid_client"


# -- the token request ------------------------------------------------------------------------


def test_client_secret_basic_form_encodes_id_and_secret(clock: FakeClock) -> None:
    server = TokenServer()
    auth = make_auth(server, clock, client_id="svc:a b", client_secret="p@ss:wörd+/", scopes="a b")
    auth.get_token()

    request = server.token_requests[0]
    scheme, _, value = request.headers["Authorization"].partition(" ")
    assert scheme == "Basic"
    assert base64.b64decode(value).decode() == "svc%3Aa+b:p%40ss%3Aw%C3%B6rd%2B%2F"
    assert server.form() == {"grant_type": "client_credentials", "scope": "a b"}
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"


def test_client_secret_post_sends_auth0_style_body(server: TokenServer, clock: FakeClock) -> None:
    auth = make_auth(
        server,
        clock,
        auth_method="client_secret_post",
        audience="https://orders.example.com/",
        extra_params={"organization": "org_123"},
    )
    auth.get_token()

    assert "Authorization" not in server.token_requests[0].headers
    assert server.form() == {
        "grant_type": "client_credentials",
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
        "audience": "https://orders.example.com/",
        "organization": "org_123",
    }


def test_the_token_request_bypasses_the_authenticated_client(
    server: TokenServer, clock: FakeClock
) -> None:
    """Even when the caller passes the authenticated client itself, no recursion happens."""
    with httpx.Client(transport=server.transport()) as client:
        auth = make_auth(server, clock, http_client=client)
        client.auth = auth
        response = client.get(API)

    assert response.status_code == 200
    assert server.token_requests[0].headers["Authorization"].startswith("Basic ")
    assert len(server.token_requests) == 1


async def test_the_token_request_bypasses_the_authenticated_async_client(
    server: TokenServer, clock: FakeClock
) -> None:
    async with httpx.AsyncClient(transport=server.async_transport()) as client:
        auth = make_auth(server, clock, http_client=client)
        client.auth = auth
        response = await client.get(API)

    assert response.status_code == 200
    assert len(server.token_requests) == 1


def test_a_shared_client_lends_no_headers_or_cookies_to_the_token_endpoint(
    server: TokenServer, clock: FakeClock
) -> None:
    """The caller's default headers and cookies are for the resource server, not the IdP."""
    with httpx.Client(
        transport=server.transport(), headers={"X-Api-Key": "k-123"}, cookies={"s": "abc"}
    ) as client:
        auth = make_auth(server, clock, http_client=client)
        assert client.get(API, auth=auth).status_code == 200
    sent = server.token_requests[0].headers
    assert "x-api-key" not in sent
    assert "cookie" not in sent


async def test_a_shared_async_client_lends_no_headers_to_discovery_or_token_requests(
    server: TokenServer, clock: FakeClock
) -> None:
    server.discovery["/.well-known/openid-configuration"] = {
        "issuer": "https://idp.test",
        "token_endpoint": TOKEN_URL,
    }
    async with httpx.AsyncClient(
        transport=server.async_transport(), headers={"X-Api-Key": "k-123"}
    ) as client:
        auth = make_auth(
            server, clock, http_client=client, token_url=None, issuer="https://idp.test"
        )
        assert (await client.get(API, auth=auth)).status_code == 200
    assert "x-api-key" not in server.token_requests[0].headers


def test_a_token_request_does_not_follow_redirects(server: TokenServer, clock: FakeClock) -> None:
    server.script.append(httpx.Response(302, headers={"Location": "https://evil.test/token"}))

    with pytest.raises(TokenRequestError) as caught:
        make_auth(server, clock).get_token()

    assert caught.value.status_code == 302
    assert len(server.token_requests) == 1


async def test_a_resource_list_is_sent_as_repeated_form_fields(
    mode: str, server: TokenServer, clock: FakeClock
) -> None:
    """RFC 8707 §2: one ``resource`` field per target, in the configured order."""
    resources = ["https://orders.example.com/", "https://billing.example.com/", "urn:audit"]
    auth = make_auth(server, clock, extra_params={"resource": resources, "organization": "o1"})

    assert (await send(mode, auth, server)).status_code == 200

    fields = parse_qsl(server.token_requests[0].content.decode())
    assert fields == [
        ("grant_type", "client_credentials"),
        *(("resource", resource) for resource in resources),
        ("organization", "o1"),
    ]
