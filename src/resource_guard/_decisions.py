"""Why a request was allowed or refused: the :class:`Decision` event, its log line and the
application's hook.

Every refusal is logged at INFO on ``resource_guard.decisions`` (successes at DEBUG) with a
stable reason code and, where it helps, expected against actual values. What comes from
the token is sanitised (printable ASCII, truncated); the token and its signature never
appear, and ``client_id``/``sub`` only once the signature verified.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from ._claims import ClaimRules
from ._jws import Header, decode_payload
from .exceptions import (
    ExpiredTokenError,
    ImmatureTokenError,
    InvalidAudienceError,
    InvalidClaimError,
    InvalidIssuerError,
    InvalidTokenError,
    InvalidTokenTypeError,
)

__all__ = [
    "EMPTY_DETAILS",
    "Decision",
    "DecisionHook",
    "annotate_refusal",
    "clean",
    "decisions_logger",
    "emit",
]

decisions_logger = logging.getLogger("resource_guard.decisions")
"""Refusals at INFO, successes at DEBUG, a failing hook at ERROR."""

EMPTY_DETAILS: Mapping[str, str] = MappingProxyType({})
_NOT_PRINTABLE = re.compile(r"[^\x20-\x7e]")
MAX_VALUE = 100


def clean(value: object, limit: int = MAX_VALUE) -> str:
    """``value`` as a short, single-line, printable-ASCII string (fit for a log line)."""
    text = value if isinstance(value, str) else repr(value)
    text = _NOT_PRINTABLE.sub("?", text[: limit + 1])
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True, slots=True)
class Decision:
    """One decision about one request: what BearerAuthMiddleware (or a route's scope check)
    decided, and why. Immutable; nothing in it is a secret (no token, no signature).

    ``outcome`` is ``"allowed"`` or ``"refused"``; ``reason`` a stable code (see
    docs/operations.md, "Why was a request refused?"): for refusals the error code
    (``invalid_signature``, ``token_expired``, ``insufficient_scope``, ...; for DPoP
    ``dpop_downgrade``, ``dpop_required``, ``dpop_unbound_token``, ``dpop_disabled``,
    ``invalid_dpop_proof``, ``dpop_proof_missing``, ``dpop_proof_duplicated``,
    ``dpop_key_mismatch``, ``dpop_replay``, ``use_dpop_nonce``), for allowed
    requests ``verified``, ``cached`` or ``anonymous``. ``status`` is the HTTP status of a
    refusal (None when allowed: the app answers). ``decided_by`` is ``"middleware"`` or
    ``"route"`` (a ``require_scopes`` check, after the middleware allowed the token).
    ``client_id`` and ``subject`` are set only once the token's signature verified.
    ``details`` holds short expected/actual values (``expected_aud``, ``actual_aud``,
    ``exp``, ``now``, ``required``, ``held``...). ``duration`` is the seconds from the
    request's arrival to the decision, measured only when a hook is set (else None).
    """

    outcome: Literal["allowed", "refused"]
    reason: str
    status: int | None
    method: str
    path: str
    decided_by: Literal["middleware", "route"] = "middleware"
    client_id: str | None = None
    subject: str | None = None
    kid: str | None = None
    alg: str | None = None
    details: Mapping[str, str] = field(default_factory=lambda: EMPTY_DETAILS)
    duration: float | None = None

    @property
    def refused(self) -> bool:
        """True for a refusal."""
        return self.outcome == "refused"

    def describe(self) -> str:
        """The log line: ``refused token_expired (401) GET /orders: kid='k1' ...``."""
        head = f"{self.outcome} {self.reason}"
        if self.status is not None:
            head += f" ({self.status})"
        head += f" {self.method} {self.path}"
        if self.decided_by == "route":
            head += " by the route"
        parts = [
            f"{name}={value!r}"
            for name, value in (
                ("kid", self.kid),
                ("alg", self.alg),
                ("client_id", self.client_id),
                ("sub", self.subject),
            )
            if value is not None
        ]
        parts.extend(f"{name}={value!r}" for name, value in self.details.items())
        return f"{head}: {' '.join(parts)}" if parts else head


DecisionHook = Callable[[Decision], object]
"""``on_decision``: called with every Decision, synchronously, on the event loop. It must
be quick; what it raises is logged and changes nothing about the request."""


def emit(decision: Decision, hook: DecisionHook | None) -> None:
    """Log ``decision`` (refusals at INFO, successes at DEBUG) and hand it to ``hook``."""
    level = logging.INFO if decision.outcome == "refused" else logging.DEBUG
    if decisions_logger.isEnabledFor(level):
        decisions_logger.log(level, "%s", decision.describe(), extra={"decision": decision})
    if hook is not None:
        try:
            hook(decision)
        except Exception as exc:
            decisions_logger.error(
                "the on_decision hook failed (%s); the request goes on unchanged",
                type(exc).__name__,
                exc_info=exc,
            )


def _when(value: object) -> str:
    """A NumericDate claim for a log line, in whole seconds. Only expired or immature
    tokens get here, whose claims passed the NumericDate check (finite numbers)."""
    if isinstance(value, int | float) and math.isfinite(value):  # pragma: no branch
        return str(int(value))
    return clean(value, 40)  # pragma: no cover - a defence: never fail while explaining


def _audience(value: object) -> str:
    if isinstance(value, list):
        return clean(" ".join(clean(item, 60) for item in value[:5]))
    return clean(value)


def _claim_details(
    exc: InvalidClaimError, claims: Mapping[str, Any], rules: ClaimRules, now: float
) -> dict[str, str]:
    details = {"claim": clean(exc.claim, 40)}
    if isinstance(exc, ExpiredTokenError | ImmatureTokenError):
        details[exc.claim] = _when(claims.get(exc.claim))
        details["now"] = str(int(now))
        details["leeway"] = f"{rules.leeway:g}"
    elif isinstance(exc, InvalidIssuerError):
        details["expected_iss"] = clean(rules.issuer)
        details["actual_iss"] = clean(claims.get("iss"))
    elif isinstance(exc, InvalidAudienceError):
        name = rules.audience_claim  # aud, or client_id (Cognito)
        details["expected_aud"] = clean(" ".join(sorted(rules.audiences)))
        details["actual_aud"] = _audience(claims.get(name))
    return details


def annotate_refusal(
    exc: InvalidTokenError,
    header: Header | None,
    payload_segment: str,
    rules: ClaimRules,
    now: float,
) -> None:
    """Attach what explains ``exc`` to it, for the log line and the Decision: the header's
    ``kid``/``alg`` (once parsed), and, for a refusal after the signature verified (a
    claim or ``typ``), ``sub``/``client_id`` and expected/actual values. Never fails."""
    if header is None:
        return
    exc.kid = None if header.kid is None else clean(header.kid, 64)
    exc.alg = clean(header.alg, 20)
    if not isinstance(exc, InvalidClaimError | InvalidTokenTypeError):
        return  # refused before the signature verified: nothing of the payload is trusted
    try:
        claims = decode_payload(payload_segment)
    except InvalidTokenError:  # pragma: no cover - claim and typ errors come after it decoded
        return
    subject = claims.get("sub")
    client = claims.get("client_id") or claims.get("azp") or claims.get("cid")
    exc.subject = clean(subject) if isinstance(subject, str) else None
    exc.client_id = clean(client) if isinstance(client, str) else None
    if isinstance(exc, InvalidClaimError):
        exc.details = MappingProxyType(_claim_details(exc, claims, rules, now))
    else:
        exc.details = MappingProxyType({"typ": clean(header.typ, 40)})
