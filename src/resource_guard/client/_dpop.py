"""The caller's side of DPoP (RFC 9449): proofs on token requests and API requests, and the
server nonces that come back (§8 from the token endpoint, §9 from resource servers).

:class:`DPoPSession` holds the key and the latest ``DPoP-Nonce`` of each origin; it decides
nothing about tokens (that is ``_auth``'s job) and does no I/O.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from typing import Final
from urllib.parse import urlsplit

import httpx

from .._fetch import Reply, json_object
from ..dpop import DPoPKey

__all__ = ["MAX_NONCE_LENGTH", "MAX_ORIGINS", "DPoPSession", "dpop_session"]

MAX_NONCE_LENGTH: Final = 1024
"""A longer ``DPoP-Nonce`` is ignored (no server needs that much)."""
MAX_ORIGINS: Final = 256
"""Origins whose nonce is remembered at once; the table starts over when full."""

_NONCE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
"""RFC 9449 §8.1: ``nonce = 1*NQCHAR``."""
_USE_NONCE = re.compile(r'(?:^|[\s,])error\s*=\s*"?use_dpop_nonce"?', re.IGNORECASE)
_DPOP_SCHEME = re.compile(r"(?:^|,)\s*dpop(?:\s|$)", re.IGNORECASE)


def origin_of(url: str | httpx.URL) -> str:
    """``scheme://host:port`` of ``url`` in lower case: whose nonce a request needs."""
    parts = urlsplit(str(url))
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


def dpop_session(value: object, clock: Callable[[], float]) -> DPoPSession | None:
    """The ``dpop=`` option: False (off), True (a fresh ES256 key) or a :class:`DPoPKey`."""
    if value is False:
        return None
    if value is True:
        return DPoPSession(DPoPKey.generate("ES256"), clock, generated=True)
    if isinstance(value, DPoPKey):
        return DPoPSession(value, clock, generated=False)
    raise TypeError(
        "dpop must be True (a fresh key), False or a resource_guard.dpop.DPoPKey, "
        f"got {type(value).__name__}"
    )


class DPoPSession:
    """A DPoP key and the nonces servers gave it; thread-safe, no I/O."""

    def __init__(self, key: DPoPKey, clock: Callable[[], float], *, generated: bool) -> None:
        self.key = key
        self.generated = generated
        """True when the key was made here and lives only in this process's memory."""
        self._clock = clock
        self._nonces: dict[str, str] = {}
        self._lock = threading.Lock()

    def nonce_for(self, url: str | httpx.URL) -> str | None:
        """The latest nonce of ``url``'s origin, if any."""
        return self._nonces.get(origin_of(url))

    def proof(self, method: str, url: str | httpx.URL, access_token: str | None = None) -> str:
        """A fresh proof for one request, with the origin's latest nonce."""
        return self.key.proof(
            method,
            str(url),
            access_token=access_token,
            nonce=self.nonce_for(url),
            now=self._clock(),
        )

    def remember(self, url: str | httpx.URL, headers: Mapping[str, str]) -> str | None:
        """Keep the ``DPoP-Nonce`` of a reply from ``url`` for the next proofs there, and
        return it (None when the reply has no usable one)."""
        nonce = headers.get("dpop-nonce")
        if nonce is None or len(nonce) > MAX_NONCE_LENGTH or not _NONCE.fullmatch(nonce):
            return None
        where = origin_of(url)
        with self._lock:
            if len(self._nonces) >= MAX_ORIGINS and where not in self._nonces:
                self._nonces.clear()
            self._nonces[where] = nonce
        return nonce

    def token_request_wants_nonce(self, url: str, reply: Reply, used: str | None) -> bool:
        """True for a token endpoint's 400 ``use_dpop_nonce`` bringing a nonce other than
        the ``used`` one: the request is worth one more try (RFC 9449 §8)."""
        nonce = self.remember(url, reply.headers)
        if reply.status_code != 400 or nonce is None or nonce == used:
            return False
        document = json_object(reply.body) or {}
        return document.get("error") == "use_dpop_nonce"

    def resource_wants_nonce(self, response: httpx.Response, used: str | None) -> bool:
        """True for a resource server's nonce challenge (:meth:`is_nonce_challenge`)
        bringing a nonce other than the ``used`` one (RFC 9449 §9); the nonce of every
        reply is remembered."""
        nonce = self.remember(response.request.url, response.headers)
        return nonce is not None and nonce != used and self.is_nonce_challenge(response)

    @staticmethod
    def is_nonce_challenge(response: httpx.Response) -> bool:
        """True for a 401 whose ``DPoP`` challenge says ``error="use_dpop_nonce"``."""
        return response.status_code == 401 and any(
            _DPOP_SCHEME.search(value) is not None and _USE_NONCE.search(value) is not None
            for value in response.headers.get_list("www-authenticate")
        )

    def authorize(self, request: httpx.Request, access_token: str) -> str | None:
        """Put ``Authorization: DPoP <token>`` and a fresh proof with ``ath`` on ``request``;
        return the nonce the proof carries."""
        nonce = self.nonce_for(request.url)
        request.headers["Authorization"] = f"DPoP {access_token}"
        request.headers["DPoP"] = self.key.proof(
            request.method,
            str(request.url),
            access_token=access_token,
            nonce=nonce,
            now=self._clock(),
        )
        return nonce
