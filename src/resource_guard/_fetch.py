"""The one hardened HTTP exchange with an identity provider (discovery, JWKS, token).

Shared by the key source (async GETs of JSON) and the client (sync and async POSTs to the
token endpoint): URL checks, bare requests (no ambient auth, headers or cookies), one
overall deadline (a server dripping bytes cannot stretch it), no redirects, a size cap
enforced while reading and again while inflating, and the one backoff formula. Whatever
goes wrong surfaces as one :class:`FetchError` with a short, one-line reason.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

MAX_DOCUMENT_BYTES = 256 * 1024
JITTER_SPREAD = 0.5
"""A jittered delay lies between 1 and ``1 + JITTER_SPREAD`` times the exponential one."""
ACCEPT_JSON: Mapping[str, str] = {"Accept": "application/json", "Accept-Encoding": "gzip, deflate"}
_MAX_REASON = 200

logger = logging.getLogger("resource_guard.jwks")


class FetchError(Exception):
    """A document could not be fetched or read; the message says why (no secrets in it).

    ``status`` is the HTTP status of a reply that was not 200, else None (no reply, or a
    reply whose body was unusable).
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class UnreadableBody(FetchError):
    """A reply arrived but its body breaks the size cap or its encoding (not worth a retry)."""


@dataclass(frozen=True, slots=True)
class Reply:
    """A complete, size-capped reply (any status)."""

    status_code: int
    headers: httpx.Headers
    body: bytes


def is_loopback_host(host: str | None) -> bool:
    """True for ``localhost`` and addresses in 127.0.0.0/8 or ``::1``."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_url(url: str, what: str, *, allow_insecure_http: bool) -> str:
    """Validate a configured or discovered URL; return it unchanged or raise ValueError."""
    if not isinstance(url, str) or not url:
        raise ValueError(f"{what} must be a non-empty URL string")
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises for a port that is not a number in range
        httpx.URL(url)  # what httpx would refuse at fetch time (control characters...)
    except (ValueError, httpx.InvalidURL):
        raise ValueError(f"{what} is not a valid URL (check its port and characters)") from None
    if parts.username or parts.password:  # first: the messages below echo the URL
        raise ValueError(f"{what} must not carry credentials")
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"{what} must be an absolute https URL, got {url!r}")
    if parts.scheme == "http" and not (allow_insecure_http or is_loopback_host(parts.hostname)):
        raise ValueError(
            f"{what} must use https ({url!r} is plain http and not loopback); "
            "pass allow_insecure_http=True only for trusted networks"
        )
    return url


@dataclass(frozen=True, slots=True)
class Document:
    """A fetched JSON object, the response's Cache-Control max-age and its ``Date``
    header (as sent, for clock-skew diagnosis), if any."""

    body: dict[str, Any]
    max_age: float | None
    date: str | None = None


def parse_max_age(cache_control: str | None) -> float | None:
    """The ``max-age`` of a Cache-Control value (0 for no-store/no-cache), else None."""
    if not cache_control:
        return None
    max_age: float | None = None
    for directive in cache_control.lower().split(","):
        name, _, value = directive.strip().partition("=")
        if name in ("no-store", "no-cache"):
            return 0.0
        digits = value.strip().strip('"')
        if name == "max-age" and digits.isascii() and digits.isdigit():
            # RFC 9111 §1.2.2: delta-seconds are digits; too large to represent means 2**31.
            max_age = float(min(int(digits), 2**31)) if len(digits) < 12 else 2.0**31
    return max_age


def describe_error(exc: BaseException) -> str:
    """``Type: message`` on one line, bounded (what a log line or an error reply may hold)."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return " ".join(text.split())[:_MAX_REASON]


class _Decompressor(Protocol):
    """What Inflater uses of ``zlib.decompressobj()`` (zlib gives its type no public name)."""

    @property
    def unconsumed_tail(self) -> bytes: ...

    def decompress(self, data: bytes, /, max_length: int = ...) -> bytes: ...


class Inflater:
    """Collects a response body, inflating gzip/deflate, and refuses it past ``limit`` bytes.

    Raises UnreadableBody (a FetchError) for an unsupported encoding, a corrupt body or
    one over the limit.
    """

    def __init__(self, encoding: str, limit: int) -> None:
        if encoding in ("", "identity"):
            self._inflate: _Decompressor | None = None
        elif encoding in ("gzip", "x-gzip"):
            self._inflate = zlib.decompressobj(zlib.MAX_WBITS | 16)
        elif encoding == "deflate":
            self._inflate = zlib.decompressobj()
        else:
            raise UnreadableBody(f"unsupported Content-Encoding {encoding!r:.40}")
        self._limit = limit
        self.body = bytearray()

    def feed(self, chunk: bytes) -> None:
        """Add one chunk of the body as received."""
        if self._inflate is None:
            self.body += chunk
        else:
            room = self._limit + 1 - len(self.body)
            try:
                self.body += self._inflate.decompress(chunk, room)
            except zlib.error:
                raise UnreadableBody("the body does not inflate") from None
            if self._inflate.unconsumed_tail:
                raise UnreadableBody(f"the body inflates to more than {self._limit} bytes")
        if len(self.body) > self._limit:
            raise UnreadableBody(f"the body is larger than {self._limit} bytes")


def backoff_delay(failures: int, base: float, cap: float, jitter: float) -> float:
    """Seconds to wait after ``failures`` (>= 1) failures in a row: the one backoff formula.

    ``base`` doubled per failure after the first, capped at ``cap`` (but never below
    ``base``), then stretched by up to :data:`JITTER_SPREAD` for ``jitter`` in [0, 1), so a
    fleet that failed together does not retry together.
    """
    doublings = min(max(failures - 1, 0), 32)  # bounded: 2 ** 1024 overflows a float
    return min(base * 2.0**doublings, max(base, cap)) * (1.0 + JITTER_SPREAD * jitter)


def json_object(body: bytes) -> dict[str, Any] | None:
    """``body`` as a JSON object, or None when it is not UTF-8 JSON holding an object."""
    try:
        document = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return document if isinstance(document, dict) else None


def bare_request(
    method: str,
    url: str,
    *,
    timeout: float,
    headers: Mapping[str, str] = ACCEPT_JSON,
    data: Mapping[str, str | tuple[str, ...]] | None = None,
) -> httpx.Request:
    """A request that takes nothing from the client that sends it: a shared client's
    default auth, headers and cookies are the service's own and must never reach the IdP.

    A URL httpx refuses raises FetchError.
    """
    extensions = {"timeout": httpx.Timeout(timeout).as_dict()}
    try:
        return httpx.Request(method, url, headers=headers, data=data, extensions=extensions)
    except (httpx.InvalidURL, ValueError) as exc:
        raise FetchError(describe_error(exc)) from None


def _reading(response: httpx.Response, limit: int, require_200: bool) -> Inflater:
    """Check the head of a response; the Inflater its body goes into."""
    if require_200 and response.status_code != 200:
        kind = "a redirect (not followed)" if response.is_redirect else "HTTP status"
        raise FetchError(
            f"{kind} {response.status_code} instead of 200", status=response.status_code
        )
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        raise UnreadableBody(f"the body is larger than {limit} bytes")
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    if response.is_stream_consumed:
        # An in-memory response (a transport that built it from bytes): httpx has
        # already decoded it, so only the size is left to check.
        encoding = "identity"
    inflater = Inflater(encoding, limit)
    if response.is_stream_consumed:
        inflater.feed(response.content)
    return inflater


def _reply(response: httpx.Response, inflater: Inflater) -> Reply:
    return Reply(response.status_code, response.headers, bytes(inflater.body))


def _failure(exc: Exception, timeout: float) -> FetchError:
    """The FetchError for whatever an exchange raised (see :func:`send_async`)."""
    if isinstance(exc, FetchError):
        return exc
    if isinstance(exc, TimeoutError):
        return FetchError(f"no complete answer within {timeout:g} s")
    if isinstance(exc, httpx.HTTPError | httpx.InvalidURL):
        return FetchError(describe_error(exc))
    logger.debug("unexpected %s while talking to the IdP", type(exc).__name__, exc_info=True)
    return FetchError(("unexpected " + describe_error(exc))[:_MAX_REASON])


async def send_async(
    client: httpx.AsyncClient,
    request: httpx.Request,
    *,
    timeout: float,
    max_bytes: int,
    require_200: bool = False,
) -> Reply:
    """Send a :func:`bare_request` and read its capped reply within one overall deadline.

    No redirects, no client auth. Raises FetchError (:class:`UnreadableBody` for a body
    over ``max_bytes`` or badly encoded); an exception of any other type from the HTTP
    stack is a failed exchange too (an event loop's transport once raised AttributeError
    for a connection closed during connect): its traceback is logged at DEBUG.
    """
    try:
        async with asyncio.timeout(timeout):
            response = await client.send(request, stream=True, follow_redirects=False, auth=None)
            try:
                inflater = _reading(response, max_bytes, require_200)
                if not response.is_stream_consumed:
                    async for chunk in response.aiter_raw():
                        inflater.feed(chunk)
            finally:
                await response.aclose()
    except Exception as exc:
        raise _failure(exc, timeout) from None
    return _reply(response, inflater)


def send_sync(
    client: httpx.Client,
    request: httpx.Request,
    *,
    timeout: float,
    max_bytes: int,
    require_200: bool = False,
) -> Reply:
    """Sync twin of :func:`send_async` (the deadline is checked as the body arrives)."""
    deadline = time.monotonic() + timeout
    try:
        response = client.send(request, stream=True, follow_redirects=False, auth=None)
        try:
            inflater = _reading(response, max_bytes, require_200)
            if not response.is_stream_consumed:
                for chunk in response.iter_raw():
                    inflater.feed(chunk)
                    if time.monotonic() > deadline:
                        raise TimeoutError
        finally:
            response.close()
    except Exception as exc:
        raise _failure(exc, timeout) from None
    return _reply(response, inflater)


async def fetch_json(
    client: httpx.AsyncClient, url: str, *, timeout: float, max_bytes: int = MAX_DOCUMENT_BYTES
) -> Document:
    """GET ``url`` and return its JSON object, or raise FetchError saying what went wrong
    (status 200 only; see :func:`send_async`)."""
    request = bare_request("GET", url, timeout=timeout)
    reply = await send_async(
        client, request, timeout=timeout, max_bytes=max_bytes, require_200=True
    )
    try:
        body = json.loads(reply.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise FetchError("the body is not JSON") from None
    if not isinstance(body, dict):
        raise FetchError("the body is not a JSON object")
    headers = reply.headers
    return Document(body, parse_max_age(headers.get("Cache-Control")), headers.get("Date"))
