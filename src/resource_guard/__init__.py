"""resource-guard: protect ASGI services as OAuth 2.0 resource servers.

Verify bearer JWT access tokens locally against the issuer's JWKS, fast and safely.
"""

import importlib.metadata

from ._decisions import Decision
from ._hybrid import HybridVerifier
from ._issuers import IssuerTemplate, TrustedIssuers
from ._jwks import KeyFetch, KeySourceStatus
from ._models import AccessToken
from ._protocol import Verifier
from ._verifier import TokenVerifier
from .client import ClientCredentialsAuth
from .exceptions import (
    AlgorithmNotAllowedError,
    ExpiredTokenError,
    ImmatureTokenError,
    InactiveTokenError,
    InsufficientScopeError,
    IntrospectionUnavailableError,
    InvalidAudienceError,
    InvalidClaimError,
    InvalidDPoPProofError,
    InvalidIssuerError,
    InvalidSignatureError,
    InvalidTokenError,
    InvalidTokenTypeError,
    KeysUnavailableError,
    MalformedTokenError,
    ReplayStoreUnavailableError,
    ResourceGuardError,
    TokenRequestError,
    UnknownIssuerError,
    UnknownKeyError,
    UnsupportedAlgorithmError,
    UseDPoPNonceError,
    VerificationUnavailableError,
)
from .introspection import IntrospectionVerifier
from .metadata import ProtectedResourceMetadata
from .middleware import BearerAuthMiddleware, TokenUser, get_access_token

__version__ = importlib.metadata.version("resource-guard")

__all__ = [
    "AccessToken",
    "AlgorithmNotAllowedError",
    "BearerAuthMiddleware",
    "ClientCredentialsAuth",
    "Decision",
    "ExpiredTokenError",
    "HybridVerifier",
    "ImmatureTokenError",
    "InactiveTokenError",
    "InsufficientScopeError",
    "IntrospectionUnavailableError",
    "IntrospectionVerifier",
    "InvalidAudienceError",
    "InvalidClaimError",
    "InvalidDPoPProofError",
    "InvalidIssuerError",
    "InvalidSignatureError",
    "InvalidTokenError",
    "InvalidTokenTypeError",
    "IssuerTemplate",
    "KeyFetch",
    "KeySourceStatus",
    "KeysUnavailableError",
    "MalformedTokenError",
    "ProtectedResourceMetadata",
    "ReplayStoreUnavailableError",
    "ResourceGuardError",
    "TokenRequestError",
    "TokenUser",
    "TokenVerifier",
    "TrustedIssuers",
    "UnknownIssuerError",
    "UnknownKeyError",
    "UnsupportedAlgorithmError",
    "UseDPoPNonceError",
    "VerificationUnavailableError",
    "Verifier",
    "__version__",
    "get_access_token",
]
