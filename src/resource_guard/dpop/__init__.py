"""DPoP (RFC 9449): sender-constrained access tokens, checked on the resource server."""

from ._key import DPoPKey
from ._nonce import NonceSource
from ._policy import DPoPMode, DPoPPolicy
from ._proof import DPoPProof, ProofVerifier
from ._replay import MemoryReplayStore, ReplayStore

__all__ = [
    "DPoPKey",
    "DPoPMode",
    "DPoPPolicy",
    "DPoPProof",
    "MemoryReplayStore",
    "NonceSource",
    "ProofVerifier",
    "ReplayStore",
]
