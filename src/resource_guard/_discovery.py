"""Issuer metadata discovery, the one implementation shared by the key source and the client.

OIDC Discovery first, then RFC 8414 (whose well-known segment precedes the path). A
document is used only when it names the configured issuer exactly; one that names another
issuer ends discovery at once (mix-up defence), while a location that cannot be fetched or
read is skipped for the next. The logic is written once, as a plan that asks for URLs and
is told what came back, and driven by an async and a sync runner, so each caller brings its
own transport (the key source's hardened GET, the client's retried exchange).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ._fetch import FetchError, Reply, check_url, json_object


class DiscoveryError(FetchError):
    """Discovery failed; ``reasons`` holds one short line per location (or the fatal one)."""

    def __init__(self, reasons: list[str] | tuple[str, ...]) -> None:
        self.reasons = tuple(reasons)
        super().__init__("discovery failed: " + "; ".join(self.reasons))


@dataclass(frozen=True, slots=True)
class Metadata:
    """A discovery document that names the configured issuer, and where it was found."""

    url: str
    document: dict[str, Any]

    def endpoint(self, name: str, *, allow_insecure_http: bool) -> str:
        """The URL the document gives for ``name`` (``jwks_uri``, ``token_endpoint``...),
        checked like a configured one; else DiscoveryError."""
        value = self.document.get(name)
        if not isinstance(value, str):
            raise DiscoveryError(
                [f"the discovery document at {self.url} has no '{name}' (no {name} URL to use)"]
            )
        try:
            return check_url(value, name, allow_insecure_http=allow_insecure_http)
        except ValueError as exc:
            raise DiscoveryError([f"the discovery document at {self.url}: {exc}"]) from None


def metadata_urls(issuer: str) -> tuple[str, str]:
    """OIDC Discovery first, then RFC 8414 (whose well-known segment precedes the path)."""
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")
    oidc = urlunsplit(
        (parts.scheme, parts.netloc, f"{path}/.well-known/openid-configuration", "", "")
    )
    oauth = urlunsplit(
        (parts.scheme, parts.netloc, f"/.well-known/oauth-authorization-server{path}", "", "")
    )
    return oidc, oauth


def _describe_status(status_code: int) -> str:
    if 300 <= status_code < 400:
        return f"HTTP {status_code} (a redirect, not followed)"
    return f"HTTP {status_code}"


def _plan(issuer: str) -> Generator[str, Reply | FetchError, Metadata]:
    """Yields each URL to GET; is sent the reply or the FetchError; returns the metadata."""
    reasons: list[str] = []
    for url in metadata_urls(issuer):
        outcome = yield url
        if isinstance(outcome, FetchError):
            reasons.append(f"{url}: {outcome}")
            continue
        if outcome.status_code != 200:
            reasons.append(f"{url}: {_describe_status(outcome.status_code)}")
            continue
        document = json_object(outcome.body)
        if document is None:
            reasons.append(f"{url}: not a JSON object")
            continue
        named = document.get("issuer")
        if named != issuer:
            reasons.append(
                f"{url}: its issuer differs from the configured issuer (the document names "
                f"another issuer, {named!r:.100}); refusing it"
            )
            raise DiscoveryError(reasons)
        return Metadata(url, document)
    raise DiscoveryError(reasons)


async def discover(issuer: str, get: Callable[[str], Awaitable[Reply]]) -> Metadata:
    """The issuer's metadata, ``get`` fetching each location (raising FetchError when it
    cannot); DiscoveryError when none is usable."""
    plan = _plan(issuer)
    url = next(plan)
    while True:
        outcome: Reply | FetchError
        try:
            outcome = await get(url)
        except FetchError as exc:
            outcome = exc
        try:
            url = plan.send(outcome)
        except StopIteration as done:
            metadata: Metadata = done.value
            return metadata


def discover_sync(issuer: str, get: Callable[[str], Reply]) -> Metadata:
    """Sync twin of :func:`discover` (the same plan, a blocking ``get``)."""
    plan = _plan(issuer)
    url = next(plan)
    while True:
        outcome: Reply | FetchError
        try:
            outcome = get(url)
        except FetchError as exc:
            outcome = exc
        try:
            url = plan.send(outcome)
        except StopIteration as done:
            metadata: Metadata = done.value
            return metadata
