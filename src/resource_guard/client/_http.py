"""Retried exchanges with the identity provider, in sync and async twins.

One attempt is :func:`resource_guard._fetch.send_sync` / ``send_async`` (the shared hardened
exchange: deadline, size cap, bounded inflation, no redirects, no ambient credentials).
Network errors and 5xx replies are retried a bounded number of times, after the shared
:func:`~resource_guard._fetch.backoff_delay`; 4xx replies and unreadable bodies are final.
Nothing here sees a secret except inside the request it is handed, and no message repeats
a request.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .._fetch import JITTER_SPREAD, FetchError, Reply, UnreadableBody, backoff_delay

MAX_REPLY_BYTES = 64 * 1024
MAX_BACKOFF = 10.0

logger = logging.getLogger("resource_guard.client")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many times to retry a failed exchange and how long to wait in between."""

    retries: int
    backoff: float
    jitter: Callable[[], float] = field(default=random.random, compare=False)

    def delay(self, attempt: int) -> float:
        """Jittered exponential delay before retry number ``attempt + 1`` (0-based): between
        2/3 of and ``backoff * 2**attempt`` (at most :data:`MAX_BACKOFF`)."""
        stretch = 1.0 + JITTER_SPREAD
        return backoff_delay(
            attempt + 1,
            base=min(self.backoff, MAX_BACKOFF) / stretch,
            cap=MAX_BACKOFF / stretch,
            jitter=self.jitter(),
        )


def where(url: str) -> str:
    """The URL without query or fragment, for messages and logs."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _should_retry(
    policy: RetryPolicy, attempt: int, url: str, outcome: Reply | FetchError
) -> float | None:
    """The delay before the next attempt, or None when ``outcome`` is final."""
    if isinstance(outcome, Reply) and outcome.status_code < 500:
        return None
    if isinstance(outcome, UnreadableBody) or attempt >= policy.retries:
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
    """Run ``attempt`` until it gives a final reply; raise the last FetchError if none comes."""
    number = 0
    while True:
        outcome: Reply | FetchError
        try:
            outcome = attempt()
        except FetchError as exc:
            outcome = exc
        delay = _should_retry(policy, number, url, outcome)
        if delay is None:
            if isinstance(outcome, FetchError):
                raise outcome
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
        outcome: Reply | FetchError
        try:
            outcome = await attempt()
        except FetchError as exc:
            outcome = exc
        delay = _should_retry(policy, number, url, outcome)
        if delay is None:
            if isinstance(outcome, FetchError):
                raise outcome
            return outcome
        await sleep(delay)
        number += 1
