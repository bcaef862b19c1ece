"""The public error tree of resource-guard.

Every error carries a stable machine-readable ``code``; messages are short, safe to log and
never contain a token, a secret or key material.

```
ResourceGuardError                  root, never raised directly
├── InvalidTokenError               the token must be refused (HTTP 401 invalid_token)
│   ├── MalformedTokenError         not a compact JWS we can read: size, segments, base64, JSON
│   ├── AlgorithmNotAllowedError    `alg` outside the allow-list (`none`, HS256, ...)
│   ├── UnknownKeyError             no published key matches the token's `kid` (after refetch)
│   ├── InvalidSignatureError       the signature does not verify with the selected key
│   ├── InvalidTokenTypeError       header `typ` is not an access-token type
│   ├── InvalidClaimError           a claim is missing, of the wrong type or wrong value
│   │   ├── ExpiredTokenError       `exp` has passed (beyond the leeway)
│   │   ├── ImmatureTokenError      `nbf` or `iat` lies in the future (beyond the leeway)
│   │   ├── InvalidIssuerError      `iss` is not the configured issuer
│   │   │   └── UnknownIssuerError  `iss` names no issuer of TrustedIssuers (no fetch made)
│   │   └── InvalidAudienceError    `aud` names none of the configured audiences
│   └── InactiveTokenError          introspection (RFC 7662) says the token is not active
├── InvalidDPoPProofError           the DPoP proof (RFC 9449) is missing, malformed or wrong
│   └── UseDPoPNonceError           the proof must carry the server's current nonce
├── InsufficientScopeError          AccessToken.require_scopes(): scopes missing
├── VerificationUnavailableError    the decision cannot be made now (HTTP 503 + Retry-After)
│   ├── KeysUnavailableError        no usable verification key can be had now
│   ├── IntrospectionUnavailableError   the introspection endpoint is down, slow or garbled
│   └── ReplayStoreUnavailableError the DPoP replay store (Redis) cannot be reached
└── TokenRequestError               the client-credentials token endpoint refused or failed
```

``UnsupportedAlgorithmError`` is the former name of :class:`AlgorithmNotAllowedError` (an
alias, same class and code). Every :class:`InvalidTokenError` has one client-facing text,
:attr:`~InvalidTokenError.description`: the class's fixed ``public_description`` where the
precise message could serve as an oracle, else the message itself.

Misconfiguration is not a token problem: constructors raise :class:`ValueError` or
:class:`TypeError` with a message that says what to fix.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

__all__ = [
    "AlgorithmNotAllowedError",
    "ExpiredTokenError",
    "ImmatureTokenError",
    "InactiveTokenError",
    "InsufficientScopeError",
    "IntrospectionUnavailableError",
    "InvalidAudienceError",
    "InvalidClaimError",
    "InvalidDPoPProofError",
    "InvalidIssuerError",
    "InvalidSignatureError",
    "InvalidTokenError",
    "InvalidTokenTypeError",
    "KeysUnavailableError",
    "MalformedTokenError",
    "ReplayStoreUnavailableError",
    "ResourceGuardError",
    "TokenRequestError",
    "UnknownIssuerError",
    "UnknownKeyError",
    "UnsupportedAlgorithmError",
    "UseDPoPNonceError",
    "VerificationUnavailableError",
]


class ResourceGuardError(Exception):
    """Root of every error resource-guard raises on purpose. Never raised directly."""

    code: str = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidTokenError(ResourceGuardError):
    """The bearer token must be refused.

    ``description`` is the short text fit for an ``error_description`` sent to the client;
    it may be vaguer than ``message`` (which is for logs) so that replies give no oracle.
    """

    code = "invalid_token"
    public_description: str | None = None
    """A fixed client-facing text for every error of this class; None sends ``message``."""

    # What explains the refusal, for logs and the decision hook (set by the verifier;
    # sanitised, short): never the token, never its signature.
    kid: str | None = None
    """The header's ``kid`` once the header was parsed (unverified)."""
    alg: str | None = None
    """The header's ``alg`` once the header was parsed (unverified)."""
    subject: str | None = None
    """``sub``: set only when the signature verified (a claim or ``typ`` refusal)."""
    client_id: str | None = None
    """``client_id``/``azp``/``cid``: set only when the signature verified."""
    details: Mapping[str, str] = MappingProxyType({})
    """Expected against actual values: ``expected_iss``/``actual_iss``,
    ``expected_aud``/``actual_aud``, ``exp``/``now``/``leeway``, ``claim``, ``typ``."""

    @property
    def description(self) -> str:
        """The ``error_description`` sent to the client: ``public_description``, else the
        message (which never holds anything of the token but claim names)."""
        return self.public_description or self.message


class MalformedTokenError(InvalidTokenError):
    """The token is not a well-formed compact JWS: too large, wrong segment count,
    non-canonical base64url, invalid JSON or header values of the wrong type."""

    code = "malformed_token"


class AlgorithmNotAllowedError(InvalidTokenError):
    """The header's ``alg`` is not in the verifier's allow-list (``none`` never is).

    The code keeps its first spelling, ``unsupported_algorithm``, for log queries and
    alerts that match on it.
    """

    code = "unsupported_algorithm"
    public_description = "the token's signing algorithm is not accepted"


UnsupportedAlgorithmError = AlgorithmNotAllowedError
"""Deprecated alias of :class:`AlgorithmNotAllowedError` (the class's first name)."""


class UnknownKeyError(InvalidTokenError):
    """No published key fits the token's ``kid`` and ``alg``, even after a refetch.

    Its client-facing description is the same as a bad signature's: no key-id oracle.
    """

    code = "unknown_key"
    public_description = "signature verification failed"


class InvalidSignatureError(InvalidTokenError):
    """The signature does not verify with the selected key."""

    code = "invalid_signature"
    public_description = "signature verification failed"


class InvalidTokenTypeError(InvalidTokenError):
    """The header ``typ`` names something other than an access token."""

    code = "invalid_token_type"
    public_description = "the token is not an access token (header 'typ')"


class InvalidClaimError(InvalidTokenError):
    """A claim is missing, of the wrong JSON type or has a refused value.

    ``claim`` names the claim, ``reason`` says what is wrong with it in a few words.
    """

    code = "invalid_claim"

    def __init__(self, claim: str, reason: str) -> None:
        super().__init__(f"{claim!r} claim {reason}")
        self.claim = claim
        self.reason = reason


class ExpiredTokenError(InvalidClaimError):
    """``exp`` lies in the past by more than the leeway."""

    code = "token_expired"
    public_description = "the token expired"

    def __init__(self, claim: str = "exp", reason: str = "has passed: the token expired") -> None:
        super().__init__(claim, reason)


class ImmatureTokenError(InvalidClaimError):
    """``nbf`` or ``iat`` lies in the future by more than the leeway."""

    code = "token_not_yet_valid"


class InvalidIssuerError(InvalidClaimError):
    """``iss`` is missing or differs from the configured issuer."""

    code = "invalid_issuer"


class InvalidAudienceError(InvalidClaimError):
    """``aud`` is missing or names none of the configured audiences."""

    code = "invalid_audience"


class UnknownIssuerError(InvalidIssuerError):
    """``iss`` names none of the issuers a :class:`~resource_guard.TrustedIssuers` trusts
    (or a tenant not on its list): refused before any key fetch."""

    code = "unknown_issuer"
    public_description = "the token's issuer is not trusted"


class InactiveTokenError(InvalidTokenError):
    """The introspection endpoint (RFC 7662) answered that the token is not active:
    revoked, expired, unknown, or ``active`` other than exactly ``true``."""

    code = "inactive_token"
    public_description = "the token is not active"


class InsufficientScopeError(ResourceGuardError):
    """A valid token lacks scopes that the caller requires.

    Raised by :meth:`AccessToken.require_scopes <resource_guard.AccessToken.require_scopes>`
    (your own code, and ``resource-guard token verify --scope``). The middleware and the
    FastAPI/Starlette ``require_scopes`` checks never raise it: they answer 403
    ``insufficient_scope`` themselves.

    ``required`` holds every scope the route asks for (for the ``scope`` challenge
    parameter), ``missing`` the ones this token lacks.
    """

    code = "insufficient_scope"

    def __init__(
        self, required: Iterable[str], missing: Iterable[str], *, any_of: bool = False
    ) -> None:
        self.required: tuple[str, ...] = tuple(required)
        self.missing: tuple[str, ...] = tuple(missing)
        self.any_of = any_of
        wording = "one of the scopes" if any_of else "the scopes"
        super().__init__(f"the token lacks {wording}: {' '.join(self.missing)}")


class VerificationUnavailableError(ResourceGuardError):
    """The token cannot be judged right now: keys, the introspection endpoint or the DPoP
    replay store is unreachable. The request must not be allowed: the middleware answers
    503 with ``Retry-After`` (``retry_after`` seconds)."""

    code = "verification_unavailable"

    def __init__(self, message: str, *, retry_after: float = 30.0, permanent: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.permanent = permanent
        """True for a misconfiguration that will not fix itself (discovery 404, issuer
        mismatch, no usable key): what ``fail_fast`` start-up raises."""


class KeysUnavailableError(VerificationUnavailableError):
    """No usable verification key can be had right now (the key source is down or
    misbehaving and no cached key set is fresh enough). Verification is not possible, so
    the request must not be allowed: the middleware answers 503 with ``Retry-After``."""

    code = "keys_unavailable"


class IntrospectionUnavailableError(VerificationUnavailableError):
    """The introspection endpoint (RFC 7662) failed, timed out or answered garbage: the
    token's state is unknown, so it is never treated as active (503)."""

    code = "introspection_unavailable"


class ReplayStoreUnavailableError(VerificationUnavailableError):
    """The DPoP replay store could not say whether a proof was used before (Redis down or
    slow): the proof cannot be accepted safely (503, unless the store fails open)."""

    code = "replay_store_unavailable"


class InvalidDPoPProofError(ResourceGuardError):
    """The ``DPoP`` proof (RFC 9449 §4.3) is missing, malformed, replayed or does not match
    the request or the token: 401 ``invalid_dpop_proof`` with a ``DPoP`` challenge."""

    code = "invalid_dpop_proof"


class UseDPoPNonceError(InvalidDPoPProofError):
    """The proof lacks the server's current nonce (RFC 9449 §8): 401 ``use_dpop_nonce`` with
    a ``DPoP-Nonce`` header holding ``nonce``, which the client puts in a new proof."""

    code = "use_dpop_nonce"

    def __init__(self, message: str, *, nonce: str) -> None:
        super().__init__(message)
        self.nonce = nonce


class TokenRequestError(ResourceGuardError):
    """The token endpoint refused a client-credentials request or could not be reached.

    ``error`` and ``error_description`` carry the RFC 6749 §5.2 reply when there was one.
    """

    code = "token_request_failed"

    def __init__(
        self,
        message: str,
        *,
        error: str | None = None,
        error_description: str | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.error = error
        self.error_description = error_description
        self.status_code = status_code
