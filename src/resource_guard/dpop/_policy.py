"""The DPoP policy of a verifier: which schemes a token may come with, and the stateful
checks of a proof (key binding, server nonce, replay), after the stateless ones."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from .._algorithms import DEFAULT_ALGORITHMS
from ..exceptions import InvalidDPoPProofError, UseDPoPNonceError
from ._nonce import NonceSource
from ._proof import DEFAULT_MAX_PROOF_BYTES, DPoPProof, ProofVerifier
from ._replay import MemoryReplayStore, ReplayStore

__all__ = [
    "DISABLED",
    "DOWNGRADE",
    "KEY_MISMATCH",
    "MODES",
    "NOT_BOUND",
    "NO_PROOF",
    "REPLAYED",
    "REQUIRED",
    "DPoPMode",
    "DPoPPolicy",
    "bound_key",
    "replay_key",
]

DPoPMode = Literal["off", "allowed", "required"]
MODES: tuple[DPoPMode, ...] = ("off", "allowed", "required")

# Why a request's scheme and token do not go together (the decision's reason code).
DOWNGRADE = "dpop_downgrade"
"""A DPoP-bound token (``cnf.jkt``) sent with the ``Bearer`` scheme."""
REQUIRED = "dpop_required"
"""A plain bearer token where the policy requires DPoP."""
NOT_BOUND = "dpop_unbound_token"
"""A token without ``cnf.jkt`` sent with the ``DPoP`` scheme."""
DISABLED = "dpop_disabled"
"""The ``DPoP`` scheme, or a DPoP-bound token, where the policy is ``off``."""

# Messages of the proof refusals the policy adds to ProofVerifier's.
NO_PROOF = "the DPoP scheme needs one DPoP proof header"
KEY_MISMATCH = "the DPoP proof is not signed by the key the token is bound to"
REPLAYED = "the DPoP proof was used before"


def bound_key(claims: Mapping[str, Any]) -> str | None:
    """The thumbprint a token is bound to (``cnf.jkt``), or None for a plain bearer token.

    A ``cnf`` claim without ``jkt`` (an mTLS binding, RFC 8705) is not DPoP's business;
    a ``jkt`` that is not a non-empty string gives ``""``, which no proof matches."""
    cnf = claims.get("cnf")
    if cnf is None or not isinstance(cnf, Mapping) or "jkt" not in cnf:
        return None
    jkt = cnf["jkt"]
    return jkt if isinstance(jkt, str) else ""


def replay_key(jkt: str, jti: str) -> str:
    """What the replay store remembers of a proof: a digest of its key and ``jti``."""
    return hashlib.sha256(f"{jkt}.{jti}".encode()).hexdigest()


class DPoPPolicy:
    """How a verifier treats DPoP (RFC 9449), and the checks of each proof.

    Modes:

    - ``"allowed"`` (default): plain bearer tokens with ``Bearer``, DPoP-bound tokens
      (``cnf.jkt``) with ``DPoP`` and a valid proof only.
    - ``"required"``: every token must come with ``DPoP`` and a valid proof; plain bearer
      tokens are refused.
    - ``"off"``: the ``DPoP`` scheme is not accepted, and DPoP-bound tokens are refused
      (never taken as bearer tokens).

    Args:
        mode: ``"off"``, ``"allowed"`` or ``"required"``.
        algorithms: what proofs may be signed with (asymmetric only; default all).
        max_age: seconds a proof is acceptable after its ``iat`` (the replay window).
        leeway: seconds of clock skew on ``iat``.
        max_bytes: longer proofs are refused unread.
        replay_store: remembers proof ids; None: a :class:`MemoryReplayStore` (one
            process: a fleet needs a shared store such as the Redis one).
        nonces: a :class:`NonceSource` to demand server nonces (``use_dpop_nonce``);
            None demands none.
        clock: seconds since the epoch; injectable for tests.
    """

    __slots__ = ("_clock", "bearer_allowed", "enabled", "mode", "nonces", "proofs", "replay_store")

    def __init__(
        self,
        mode: DPoPMode = "allowed",
        *,
        algorithms: Sequence[str] = DEFAULT_ALGORITHMS,
        max_age: float = 300,
        leeway: float = 5,
        max_bytes: int = DEFAULT_MAX_PROOF_BYTES,
        replay_store: ReplayStore | None = None,
        nonces: NonceSource | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"dpop mode must be one of {', '.join(MODES)}; got {mode!r:.40}")
        self.mode: DPoPMode = mode
        self.enabled = mode != "off"
        """True unless the mode is ``"off"``: the ``DPoP`` scheme is accepted."""
        self.bearer_allowed = mode != "required"
        """True unless the mode is ``"required"``: plain bearer tokens are accepted."""
        self.proofs = ProofVerifier(
            algorithms=algorithms, max_age=max_age, leeway=leeway, max_bytes=max_bytes, clock=clock
        )
        """The stateless checks (:class:`ProofVerifier`)."""
        if replay_store is None:
            replay_store = MemoryReplayStore(timer=clock)  # on the clock iat is judged by
        elif not callable(getattr(replay_store, "seen_before", None)):
            raise TypeError("replay_store must be a ReplayStore (async seen_before, aclose)")
        self.replay_store: ReplayStore = replay_store
        if nonces is not None and not isinstance(nonces, NonceSource):
            raise TypeError("nonces must be a NonceSource (or None)")
        self.nonces = nonces
        self._clock = clock

    @classmethod
    def of(cls, value: object) -> DPoPPolicy:
        """``value`` itself when a policy, else a policy of that mode (``dpop="required"``)."""
        if isinstance(value, DPoPPolicy):
            return value
        if not isinstance(value, str):
            raise TypeError(
                "dpop must be 'off', 'allowed', 'required' or a DPoPPolicy, "
                f"got {type(value).__name__}"
            )
        if value not in MODES:
            raise ValueError(f"dpop mode must be one of {', '.join(MODES)}; got {value!r:.40}")
        return cls(value)

    def __repr__(self) -> str:
        return f"DPoPPolicy({self.mode!r})"

    @property
    def algorithms(self) -> frozenset[str]:
        """The algorithms a proof may use (the ``algs`` of a ``DPoP`` challenge)."""
        return self.proofs.algorithms

    def refusal(self, *, dpop_scheme: bool, jkt: str | None) -> str | None:
        """Why a token bound to ``jkt`` (None: not bound) may not come with this scheme
        (:data:`DOWNGRADE`, :data:`REQUIRED`, :data:`NOT_BOUND`, :data:`DISABLED`), or
        None when the request may go on (to the proof check with ``dpop_scheme``)."""
        if self.mode == "off":
            return DISABLED if dpop_scheme or jkt is not None else None
        if dpop_scheme:
            return None if jkt is not None else NOT_BOUND
        if jkt is not None:
            return DOWNGRADE
        return None if self.mode == "allowed" else REQUIRED

    async def check(
        self,
        proof: str,
        *,
        method: str,
        url: str,
        access_token: str,
        jkt: str,
    ) -> DPoPProof:
        """Every check of RFC 9449 §4.3 and §7 for a proof sent with ``access_token``
        (bound to ``jkt``) on a request ``method`` ``url``: the stateless ones, the key
        binding, the server nonce, then (last, so a bad proof is never remembered) its
        ``jti`` in the replay store.

        Raises :class:`~resource_guard.InvalidDPoPProofError`,
        :class:`~resource_guard.UseDPoPNonceError` (with the nonce to use) or
        :class:`~resource_guard.ReplayStoreUnavailableError`.
        """
        checked = self.proofs.verify(proof, method=method, url=url, access_token=access_token)
        if checked.jkt != jkt:
            raise InvalidDPoPProofError(KEY_MISMATCH)
        nonces = self.nonces
        if nonces is not None and (checked.nonce is None or not nonces.valid(checked.nonce)):
            raise UseDPoPNonceError(
                "the DPoP proof lacks the server's nonce", nonce=nonces.current()
            )
        proofs = self.proofs
        remaining = checked.iat + proofs.max_age + proofs.leeway - self._clock()
        if await self.replay_store.seen_before(replay_key(checked.jkt, checked.jti), remaining):
            raise InvalidDPoPProofError(REPLAYED)
        return checked

    def next_nonce(self, proof: DPoPProof) -> str | None:
        """The current nonce when ``proof`` carried the previous window's (send it in
        ``DPoP-Nonce`` with the reply, so the client rotates); else None."""
        nonces = self.nonces
        if nonces is None or proof.nonce is None or nonces.fresh(proof.nonce):
            return None
        return nonces.current()

    async def aclose(self) -> None:
        """Close the replay store (its connections, for a shared one)."""
        await self.replay_store.aclose()
