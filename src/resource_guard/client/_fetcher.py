"""How :class:`~resource_guard.client.ClientCredentialsAuth` gets one token: discover the
token endpoint if needed, send the client-credentials request, read the reply. Sync and
async twins; *when* to fetch (caching, locking) is the caller's business."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass

import httpx

from .._client_auth import basic_authorization
from .._discovery import DiscoveryError, Metadata, discover, discover_sync
from .._fetch import ACCEPT_JSON, FetchError, Reply, bare_request, send_async, send_sync
from ..exceptions import TokenRequestError
from ._dpop import DPoPSession
from ._http import MAX_REPLY_BYTES, RetryPolicy, exchange_async, exchange_sync, where
from ._token import ParamValue, Token, token_form, token_from_reply

logger = logging.getLogger("resource_guard.client")


@dataclass(frozen=True, slots=True, repr=False)
class Credentials:
    """What the token request says: the client, its secret and what it asks for."""

    client_id: str
    client_secret: str
    scopes: tuple[str, ...]
    audience: str | None
    extra_params: Mapping[str, ParamValue]
    auth_method: str

    def __repr__(self) -> str:
        return f"Credentials(client_id={self.client_id!r})"

    def request(self, url: str, timeout: float) -> httpx.Request:
        """The token request, credentials in a Basic header or in the body."""
        headers = dict(ACCEPT_JSON)
        post = self.auth_method == "client_secret_post"
        if not post:
            headers["Authorization"] = basic_authorization(self.client_id, self.client_secret)
        form = token_form(
            scopes=self.scopes,
            audience=self.audience,
            extra_params=self.extra_params,
            client_id=self.client_id if post else None,
            client_secret=self.client_secret if post else None,
        )
        return bare_request("POST", url, timeout=timeout, headers=headers, data=form)


class TokenFetcher:
    """Fetch one token (discovering the endpoint from ``issuer`` first if needed)."""

    def __init__(
        self,
        *,
        token_url: str | None,
        issuer: str | None,
        credentials: Credentials,
        timeout: float,
        refresh_skew: float,
        policy: RetryPolicy,
        sync_http: httpx.Client | None,
        async_http: httpx.AsyncClient | None,
        allow_insecure_http: bool,
        clock: Callable[[], float],
        dpop: DPoPSession | None = None,
    ) -> None:
        self.token_url = token_url
        self.dpop = dpop
        """With DPoP: the key that signs a proof for each token request (RFC 9449 §5)."""
        self._issuer = issuer or ""
        self._credentials = credentials
        self._timeout = timeout
        self._refresh_skew = refresh_skew
        self._policy = policy
        self.sync_http = sync_http
        self.async_http = async_http
        self._allow_insecure_http = allow_insecure_http
        self._clock = clock
        self.sleep: Callable[[float], object] = time.sleep
        self.async_sleep: Callable[[float], Awaitable[object]] = asyncio.sleep

    # -- sync -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _sync_client(self) -> Iterator[httpx.Client]:
        if self.sync_http is not None:
            yield self.sync_http
            return
        with httpx.Client(timeout=self._timeout, follow_redirects=False) as client:
            yield client

    def fetch_sync(self) -> Token:
        """A new token, or :class:`TokenRequestError`."""
        with self._sync_client() as client:
            url = self.token_url or self._discover_sync(client)
            started = self._clock()
            reply = self._exchange_sync(client, url)
        return self._token_from(url, reply, started)

    def _exchange_sync(self, client: httpx.Client, url: str) -> Reply:
        """The token request's final reply, after one more try for a DPoP nonce if asked."""
        sent = self._nonce(url)
        reply = self._send_sync(client, url)
        if self._retry_with_nonce(url, reply, sent):
            reply = self._send_sync(client, url)
            self._remember_nonce(url, reply)
        return reply

    def _send_sync(self, client: httpx.Client, url: str) -> Reply:
        try:
            return exchange_sync(
                lambda: send_sync(
                    client,
                    self._request(url),
                    timeout=self._timeout,
                    max_bytes=MAX_REPLY_BYTES,
                ),
                url=url,
                policy=self._policy,
                sleep=self.sleep,
            )
        except FetchError as exc:
            raise _failed(url, exc) from exc

    def _discover_sync(self, client: httpx.Client) -> str:
        def get(url: str) -> Reply:
            return exchange_sync(
                lambda: send_sync(
                    client,
                    bare_request("GET", url, timeout=self._timeout),
                    timeout=self._timeout,
                    max_bytes=MAX_REPLY_BYTES,
                ),
                url=url,
                policy=self._policy,
                sleep=self.sleep,
            )

        try:
            return self._adopt(discover_sync(self._issuer, get))
        except DiscoveryError as error:
            raise self._undiscovered(error) from None

    # -- async ------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _async_client(self) -> AsyncIterator[httpx.AsyncClient]:
        if self.async_http is not None:
            yield self.async_http
            return
        async with httpx.AsyncClient(timeout=self._timeout, follow_redirects=False) as client:
            yield client

    async def fetch_async(self) -> Token:
        """Async twin of :meth:`fetch_sync`."""
        async with self._async_client() as client:
            url = self.token_url or await self._discover_async(client)
            started = self._clock()
            reply = await self._exchange_async(client, url)
        return self._token_from(url, reply, started)

    async def _exchange_async(self, client: httpx.AsyncClient, url: str) -> Reply:
        """Async twin of :meth:`_exchange_sync`."""
        sent = self._nonce(url)
        reply = await self._send_async(client, url)
        if self._retry_with_nonce(url, reply, sent):
            reply = await self._send_async(client, url)
            self._remember_nonce(url, reply)
        return reply

    async def _send_async(self, client: httpx.AsyncClient, url: str) -> Reply:
        try:
            return await exchange_async(
                lambda: send_async(
                    client,
                    self._request(url),
                    timeout=self._timeout,
                    max_bytes=MAX_REPLY_BYTES,
                ),
                url=url,
                policy=self._policy,
                sleep=self.async_sleep,
            )
        except FetchError as exc:
            raise _failed(url, exc) from exc

    async def _discover_async(self, client: httpx.AsyncClient) -> str:
        async def get(url: str) -> Reply:
            return await exchange_async(
                lambda: send_async(
                    client,
                    bare_request("GET", url, timeout=self._timeout),
                    timeout=self._timeout,
                    max_bytes=MAX_REPLY_BYTES,
                ),
                url=url,
                policy=self._policy,
                sleep=self.async_sleep,
            )

        try:
            return self._adopt(await discover(self._issuer, get))
        except DiscoveryError as error:
            raise self._undiscovered(error) from None

    # -- requests and replies ------------------------------------------------------------

    def _request(self, url: str) -> httpx.Request:
        """The token request; with DPoP, a fresh proof for each attempt (proofs are
        single-use, so a retried request needs a new one)."""
        request = self._credentials.request(url, self._timeout)
        if self.dpop is not None:
            request.headers["DPoP"] = self.dpop.proof("POST", url)
        return request

    def _nonce(self, url: str) -> str | None:
        """The DPoP nonce the next token request's proof carries (None without DPoP)."""
        return None if self.dpop is None else self.dpop.nonce_for(url)

    def _retry_with_nonce(self, url: str, reply: Reply, sent: str | None) -> bool:
        """True when the token endpoint asked for a DPoP nonce other than the one ``sent``
        (RFC 9449 §8): the request is worth one more try."""
        if self.dpop is None or not self.dpop.token_request_wants_nonce(url, reply, sent):
            return False
        logger.debug("the token endpoint %s asked for a DPoP nonce; retrying with it", where(url))
        return True

    def _remember_nonce(self, url: str, reply: Reply) -> None:
        """Keep the ``DPoP-Nonce`` of the retried request's reply: the latest one counts
        (RFC 9449 §8.2), so the next token request carries it."""
        assert self.dpop is not None  # only called after a nonce retry
        self.dpop.remember(url, reply.headers)

    def _token_from(self, url: str, reply: Reply, started: float) -> Token:
        token = token_from_reply(
            reply.status_code,
            reply.body,
            where=where(url),
            secret=self._credentials.client_secret,
            now=started,
            skew=self._refresh_skew,
            token_type="Bearer" if self.dpop is None else "DPoP",
        )
        logger.info(
            "obtained an access token from %s, valid for %.0f s",
            where(url),
            token.expires_at - token.obtained_at,
        )
        return token

    def _adopt(self, metadata: Metadata) -> str:
        """The discovered token endpoint, checked like a configured one, kept for next time."""
        endpoint = metadata.endpoint(
            "token_endpoint", allow_insecure_http=self._allow_insecure_http
        )
        self.token_url = endpoint
        logger.info("discovered the token endpoint %s", where(endpoint))
        return endpoint

    def _undiscovered(self, error: DiscoveryError) -> TokenRequestError:
        return TokenRequestError(
            f"could not discover the token endpoint of issuer {self._issuer!r}: "
            + "; ".join(error.reasons)
        )


def _failed(url: str, exc: FetchError) -> TokenRequestError:
    return TokenRequestError(f"no usable answer from {where(url)}: {exc}")
