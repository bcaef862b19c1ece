"""Hardened GET of a small JSON document (discovery, JWKS) from an identity provider.

One overall deadline (a server dripping bytes cannot stretch it), status 200 only, no
redirects, a size cap enforced while reading and again while inflating, JSON objects only.
Whatever goes wrong surfaces as one :class:`FetchError` with a short, one-line reason.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import zlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

MAX_DOCUMENT_BYTES = 256 * 1024
_MAX_REASON = 200

logger = logging.getLogger("resource_guard.jwks")


class FetchError(Exception):
    """A document could not be fetched or read; the message says why (no secrets in it)."""


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
    """A fetched JSON object and the response's Cache-Control max-age, if any."""

    body: dict[str, Any]
    max_age: float | None


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
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:_MAX_REASON]


class Inflater:
    """Collects a response body, inflating gzip/deflate, and refuses it past ``limit`` bytes.

    Raises FetchError for an unsupported encoding, a corrupt body or one over the limit.
    """

    def __init__(self, encoding: str, limit: int) -> None:
        if encoding in ("", "identity"):
            self._inflate: zlib._Decompress | None = None
        elif encoding in ("gzip", "x-gzip"):
            self._inflate = zlib.decompressobj(zlib.MAX_WBITS | 16)
        elif encoding == "deflate":
            self._inflate = zlib.decompressobj()
        else:
            raise FetchError(f"unsupported Content-Encoding {encoding!r:.40}")
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
                raise FetchError("the body does not inflate") from None
            if self._inflate.unconsumed_tail:
                raise FetchError(f"the body inflates to more than {self._limit} bytes")
        if len(self.body) > self._limit:
            raise FetchError(f"the body is larger than {self._limit} bytes")




async def fetch_json(
    client: httpx.AsyncClient, url: str, *, timeout: float, max_bytes: int = MAX_DOCUMENT_BYTES
) -> Document:
    """GET ``url`` and return its JSON object, or raise FetchError saying what went wrong.

    An exception of any other type from the HTTP stack is a failed fetch too (an event
    loop's transport once raised AttributeError for a connection closed during connect):
    its traceback is logged at DEBUG, its type and message make the FetchError's reason.
    """
    try:
        async with asyncio.timeout(timeout):
            return await _fetch(client, url, timeout, max_bytes)
    except FetchError:
        raise
    except TimeoutError:
        raise FetchError(f"no complete answer within {timeout:g} s") from None
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise FetchError(describe_error(exc)) from None
    except Exception as exc:
        logger.debug("unexpected %s while fetching a document", type(exc).__name__, exc_info=True)
        raise FetchError(("unexpected " + describe_error(exc))[:_MAX_REASON]) from None


async def _fetch(client: httpx.AsyncClient, url: str, timeout: float, limit: int) -> Document:
    headers = {"Accept": "application/json", "Accept-Encoding": "gzip, deflate"}
    # A bare request: a shared client's default auth, headers and cookies are the
    # service's own and must never reach the identity provider.
    request = httpx.Request(
        "GET", url, headers=headers, extensions={"timeout": httpx.Timeout(timeout).as_dict()}
    )
    response = await client.send(request, stream=True, follow_redirects=False, auth=None)
    try:
        if response.status_code != 200:
            kind = "a redirect (not followed)" if response.is_redirect else "HTTP status"
            raise FetchError(f"{kind} {response.status_code} instead of 200")
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            raise FetchError(f"the body is larger than {limit} bytes")
        encoding = response.headers.get("Content-Encoding", "").strip().lower()
        if response.is_stream_consumed:
            # An in-memory response (a transport that built it from bytes): httpx has
            # already decoded it, so only the size is left to check.
            encoding = "identity"
        inflater = Inflater(encoding, limit)
        if response.is_stream_consumed:
            inflater.feed(response.content)
        else:
            async for chunk in response.aiter_raw():
                inflater.feed(chunk)
    finally:
        await response.aclose()
    try:
        body = json.loads(inflater.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise FetchError("the body is not JSON") from None
    if not isinstance(body, dict):
        raise FetchError("the body is not a JSON object")
    return Document(body, parse_max_age(response.headers.get("Cache-Control")))
