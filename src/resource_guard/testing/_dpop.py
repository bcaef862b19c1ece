"""The fake issuer's DPoP side (RFC 9449 §5 and §8): bind tokens to the client's key.

A token request carrying one valid ``DPoP`` proof (signed by the client's key, ``htm``
POST, ``htu`` the token endpoint, fresh, never seen before) gets a token whose ``cnf.jkt``
is that key's thumbprint and ``token_type: DPoP``. A bad proof is a 400
``invalid_dpop_proof``; when nonces are demanded, a proof without the current one is a 400
``use_dpop_nonce`` with a ``DPoP-Nonce`` header. Proofs are checked by the library's own
:class:`~resource_guard.dpop.ProofVerifier`; seen proofs are remembered here, in a small
bounded table (the issuer answers from threads, so the store is synchronous).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Final

from ..dpop import DPoPKey, NonceSource, ProofVerifier
from ..exceptions import InvalidDPoPProofError
from ._http import HTTPReply, HTTPRequest
from ._token_endpoint import OAuthError, error_reply

__all__ = [
    "MAX_REMEMBERED_PROOFS",
    "DPoPBinding",
    "DPoPError",
    "TokenEndpointDPoP",
    "dpop_headers",
    "jkt_of",
    "with_nonce",
]

MAX_REMEMBERED_PROOFS: Final = 10_000
"""Proof ids the fake issuer remembers at most (expired ones are dropped first)."""


class DPoPError(OAuthError):
    """A refused proof at the token endpoint (400); ``nonce`` goes out as ``DPoP-Nonce``."""

    def __init__(self, error: str, description: str, *, nonce: str | None = None) -> None:
        super().__init__(400, error, description)
        self.nonce = nonce


@dataclass(frozen=True, slots=True)
class DPoPBinding:
    """What an accepted proof binds the token to, and the nonce to announce (if any)."""

    jkt: str
    nonce: str | None


def with_nonce(reply: HTTPReply, nonce: str | None) -> HTTPReply:
    """``reply`` with a ``DPoP-Nonce`` header when ``nonce`` is given."""
    if nonce is None:
        return reply
    return replace(reply, headers=(*reply.headers, ("dpop-nonce", nonce)))


class TokenEndpointDPoP:
    """Checks the ``DPoP`` header of token requests for one :class:`FakeIssuer`."""

    def __init__(self, clock: Callable[[], float], *, require_nonce: bool = False) -> None:
        if not isinstance(require_nonce, bool):
            raise TypeError("dpop_nonce must be a bool")
        self.require_nonce = require_nonce
        """Demand the issuer's current ``DPoP-Nonce`` in every proof (settable)."""
        self._clock = clock
        self._proofs = ProofVerifier(clock=clock)
        self._nonces = NonceSource(clock=clock)
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    @property
    def algorithms(self) -> list[str]:
        """``dpop_signing_alg_values_supported`` of the metadata (RFC 9449 §5.1)."""
        return sorted(self._proofs.algorithms)

    def bind(self, request: HTTPRequest, token_endpoint: str) -> DPoPBinding | None:
        """None for a request without a ``DPoP`` header; the binding of a valid proof;
        :class:`DPoPError` for anything else."""
        proofs = request.header_values("dpop")
        if not proofs:
            return None
        if len(proofs) > 1:
            raise DPoPError("invalid_dpop_proof", "more than one DPoP header")
        try:
            proof = self._proofs.verify(proofs[0], method=request.method, url=token_endpoint)
        except InvalidDPoPProofError as exc:
            raise DPoPError("invalid_dpop_proof", exc.message) from None
        announce = None
        if self.require_nonce:
            announce = self._nonces.current()
            if proof.nonce is None or not self._nonces.valid(proof.nonce):
                raise DPoPError(
                    "use_dpop_nonce", "the DPoP proof must carry the issuer's nonce", nonce=announce
                )
        expires = proof.iat + self._proofs.max_age + self._proofs.leeway
        if self._seen_before(f"{proof.jkt}:{proof.jti}", expires):
            raise DPoPError("invalid_dpop_proof", "the DPoP proof was used before")
        return DPoPBinding(proof.jkt, announce)

    def _seen_before(self, jti: str, expires: float) -> bool:
        digest = hashlib.sha256(jti.encode("utf-8", "replace")).hexdigest()
        now = self._clock()
        with self._lock:
            if self._seen.get(digest, now) > now:
                return True
            if len(self._seen) >= MAX_REMEMBERED_PROOFS:
                self._seen = {key: until for key, until in self._seen.items() if until > now}
                while len(self._seen) >= MAX_REMEMBERED_PROOFS:  # all live: drop the oldest
                    del self._seen[next(iter(self._seen))]
            self._seen[digest] = expires
            return False

    @staticmethod
    def error_reply(exc: OAuthError) -> HTTPReply:
        """The JSON error reply, with ``DPoP-Nonce`` for ``use_dpop_nonce``."""
        return with_nonce(error_reply(exc), exc.nonce if isinstance(exc, DPoPError) else None)


def jkt_of(dpop_key: object) -> str:
    """The ``cnf.jkt`` for ``mint(dpop_key=...)``: a key's thumbprint, or a thumbprint."""
    if isinstance(dpop_key, DPoPKey):
        return dpop_key.thumbprint
    if isinstance(dpop_key, str) and dpop_key:
        return dpop_key
    raise TypeError(
        "dpop_key must be a DPoPKey or its thumbprint (a non-empty str), "
        f"got {type(dpop_key).__name__}"
    )


def dpop_headers(
    access_token: str, key: DPoPKey, method: str, url: str, *, nonce: str | None = None
) -> dict[str, str]:
    """``Authorization: DPoP <token>`` and a fresh ``DPoP`` proof for one request."""
    proof = key.proof(method, url, access_token=access_token, nonce=nonce)
    return {"Authorization": f"DPoP {access_token}", "DPoP": proof}
