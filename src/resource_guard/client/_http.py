"""Bounded HTTP exchanges with a token endpoint, in sync and async twins.

Each attempt has a deadline and a size cap (enforced while reading and while inflating);
network errors and 5xx replies are retried a bounded number of times with jittered
exponential backoff; 4xx replies are returned at once. Nothing here sees a secret except
inside the request it is handed, and no message repeats a request.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from .._fetch import FetchError, Inflater
from ..exceptions import TokenRequestError

MAX_REPLY_BYTES = 64 * 1024
MAX_BACKOFF = 10.0

logger = logging.getLogger("resource_guard.client")


@dataclass(frozen=True, slots=True)
class Reply:
    """A complete, size-capped reply."""

    status_code: int
    body: bytes


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many times to retry a failed exchange and how long to wait in between."""

    retries: int
    backoff: float

    def delay(self, attempt: int) -> float:
        """Jittered exponential delay before retry number ``attempt + 1`` (0-based)."""
        return min(MAX_BACKOFF, self.backoff * 2.0**attempt) * random.uniform(0.5, 1.0)  # noqa: S311


def where(url: str) -> str:
    """The URL without query or fragment, for messages and logs."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


class _Unreachable(Exception):
    """One attempt failed without a usable reply; worth retrying."""


class _Unreadable(Exception):
    """A reply arrived but breaks the size cap or its encoding; not worth retrying."""


def _start(response: httpx.Response, limit: int) -> Inflater:
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _Unreadable(f"the body is larger than {limit} bytes")
    try:
        return Inflater(response.headers.get("Content-Encoding", "").strip().lower(), limit)
    except FetchError as exc:
        raise _Unreadable(str(exc)) from None


def _feed(inflater: Inflater, chunk: bytes) -> None:
    try:
        inflater.feed(chunk)
    except FetchError as exc:
        raise _Unreadable(str(exc)) from None


def _complete(response: httpx.Response) -> Reply:
    """A reply whose transport handed over the whole, decoded body (``httpx.MockTransport``)."""
    if len(response.content) > MAX_REPLY_BYTES:
        raise _Unreadable(f"the body is larger than {MAX_REPLY_BYTES} bytes")
    return Reply(response.status_code, response.content)


def _describe(exc: httpx.HTTPError) -> str:
    detail = str(exc)
    return f"{type(exc).__name__}: {detail}"[:200] if detail else type(exc).__name__


def send_sync(client: httpx.Client, request: httpx.Request, *, timeout: float) -> Reply:
    """Send ``request`` and read the capped reply before the deadline."""
    deadline = time.monotonic() + timeout
    try:
        response = client.send(request, stream=True, auth=None, follow_redirects=False)
        try:
            if response.is_stream_consumed:
                return _complete(response)
            inflater = _start(response, MAX_REPLY_BYTES)
            for chunk in response.iter_raw():
                _feed(inflater, chunk)
                if time.monotonic() > deadline:
                    raise _Unreachable(f"no complete answer within {timeout:g} s")
        finally:
            response.close()
    except httpx.HTTPError as exc:
        raise _Unreachable(_describe(exc)) from exc
    return Reply(response.status_code, bytes(inflater.body))


async def send_async(client: httpx.AsyncClient, request: httpx.Request, *, timeout: float) -> Reply:
    """Send ``request`` and read the capped reply before the deadline."""
    try:
        async with asyncio.timeout(timeout):
            response = await client.send(request, stream=True, auth=None, follow_redirects=False)
            try:
                if response.is_stream_consumed:
                    return _complete(response)
                inflater = _start(response, MAX_REPLY_BYTES)
                async for chunk in response.aiter_raw():
                    _feed(inflater, chunk)
            finally:
                await response.aclose()
    except TimeoutError:
        raise _Unreachable(f"no complete answer within {timeout:g} s") from None
    except httpx.HTTPError as exc:
        raise _Unreachable(_describe(exc)) from exc
    return Reply(response.status_code, bytes(inflater.body))


def _failed(url: str, exc: Exception) -> TokenRequestError:
    return TokenRequestError(f"no usable answer from {where(url)}: {exc}")


def _should_retry(
    policy: RetryPolicy, attempt: int, url: str, outcome: Reply | Exception
) -> float | None:
    """The delay before the next attempt, or None when ``outcome`` is final."""
    if isinstance(outcome, Reply) and outcome.status_code < 500:
        return None
    if isinstance(outcome, _Unreadable) or attempt >= policy.retries:
        return None
    delay = policy.delay(attempt)
    reason = f"HTTP {outcome.status_code}" if isinstance(outcome, Reply) else str(outcome)
    logger.warning(
        "token endpoint request to %s failed (%s); retry %d of %d in %.2f s",
        where(url),
        reason,
        attempt + 1,
        policy.retries,
        delay,
    )
    return delay


def exchange_sync(
    attempt: Callable[[], Reply],
    *,
    url: str,
    policy: RetryPolicy,
    sleep: Callable[[float], object],
) -> Reply:
    """Run ``attempt`` until it gives a final reply; raise TokenRequestError if none comes."""
    number = 0
    while True:
        outcome: Reply | Exception
        try:
            outcome = attempt()
        except (_Unreachable, _Unreadable) as exc:
            outcome = exc
        delay = _should_retry(policy, number, url, outcome)
        if delay is None:
            if isinstance(outcome, Exception):
                raise _failed(url, outcome) from outcome
            return outcome
        sleep(delay)
        number += 1


async def exchange_async(
    attempt: Callable[[], Awaitable[Reply]],
    *,
    url: str,
    policy: RetryPolicy,
    sleep: Callable[[float], Awaitable[object]],
) -> Reply:
    """Async twin of :func:`exchange_sync`."""
    number = 0
    while True:
        outcome: Reply | Exception
        try:
            outcome = await attempt()
        except (_Unreachable, _Unreadable) as exc:
            outcome = exc
        delay = _should_retry(policy, number, url, outcome)
        if delay is None:
            if isinstance(outcome, Exception):
                raise _failed(url, outcome) from outcome
            return outcome
        await sleep(delay)
        number += 1
