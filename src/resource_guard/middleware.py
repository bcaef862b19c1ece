"""BearerAuthMiddleware: RFC 6750 bearer-token protection for any ASGI app (pure ASGI).

Every HTTP request and WebSocket handshake on a path that is not public must carry a valid
``Authorization: Bearer <JWT>``, or ``Authorization: DPoP <JWT>`` with a ``DPoP`` proof
(RFC 9449) for a sender-constrained token, as the verifier's DPoP policy says; otherwise
the middleware answers itself (401/400/403/503, JSON body, ``WWW-Authenticate``
challenges) and the app never runs. On success:

- ``scope["auth"]`` is ``AuthCredentials(sorted token scopes)`` (``request.auth``),
- ``scope["user"]`` is a :class:`TokenUser` (``request.user``, ``request.user.token``),
- :func:`get_access_token` returns the :class:`~resource_guard.AccessToken`,

so Starlette's own ``@requires(...)`` works unchanged.

Every decision is logged on ``resource_guard.decisions`` (refusals at INFO, successes at
DEBUG) and handed to ``on_decision`` when one is set, as a :class:`Decision`.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable
from time import perf_counter
from types import MappingProxyType
from typing import Any, Literal

from starlette.authentication import AuthCredentials, BaseUser, UnauthenticatedUser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._access import (
    ACCESS_TOKEN_KEY,
    APP_KEY,
    OBSERVER_KEY,
    REPLIES_KEY,
    AccessRefused,
    decision_path,
    get_access_token,
    send_reply,
)
from ._bearer_reply import BearerReplies, Reply
from ._bearer_request import (
    BODYLESS_METHODS,
    DUPLICATE_HEADERS,
    MALFORMED_DPOP_TOKEN,
    MALFORMED_HEADER,
    MALFORMED_TOKEN,
    MISSING_DPOP_TOKEN,
    MISSING_TOKEN,
    TWO_METHODS,
    BearerRequestError,
    extract_credentials,
    has_access_token_parameter,
    has_form_body,
    quick_token,
)
from ._decisions import EMPTY_DETAILS, Decision, DecisionHook, clean, decisions_logger, emit
from ._dpop_request import SEVERAL_PROOFS, RequestURL, dpop_proof
from ._models import AccessToken
from ._protocol import Verifier
from .dpop import DPoPPolicy
from .dpop._policy import (
    DISABLED,
    DOWNGRADE,
    KEY_MISMATCH,
    NO_PROOF,
    NOT_BOUND,
    REPLAYED,
    REQUIRED,
    bound_key,
)
from .exceptions import (
    InvalidDPoPProofError,
    InvalidTokenError,
    UseDPoPNonceError,
    VerificationUnavailableError,
)
from .metadata import MetadataEndpoint, ProtectedResourceMetadata

__all__ = ["BearerAuthMiddleware", "TokenUser", "get_access_token"]

logger = logging.getLogger("resource_guard.middleware")

_DEBUG = logging.DEBUG
_REQUEST_PROBLEMS = {
    DUPLICATE_HEADERS: "duplicate_authorization",
    TWO_METHODS: "two_methods",
    MALFORMED_HEADER: "malformed_header",
    MISSING_TOKEN: "empty_token",
    MISSING_DPOP_TOKEN: "empty_token",
    MALFORMED_TOKEN: "malformed_bearer_token",
    MALFORMED_DPOP_TOKEN: "malformed_dpop_token",
}
"""The ``problem`` detail of a 400 ``invalid_request`` refusal, by its description."""
_DPOP_SCHEME_PROBLEMS = frozenset({MISSING_DPOP_TOKEN, MALFORMED_DPOP_TOKEN})
"""Descriptions of a malformed ``DPoP`` scheme: their 400 goes on the DPoP challenge."""
_PROOF_REASONS = {
    REPLAYED: "dpop_replay",
    KEY_MISMATCH: "dpop_key_mismatch",
    NO_PROOF: "dpop_proof_missing",
    SEVERAL_PROOFS: "dpop_proof_duplicated",
}
"""The decision reason of a refused DPoP proof, by message (else ``invalid_dpop_proof``)."""
_SCHEME_REFUSALS = {
    DOWNGRADE: "the token is bound to a DPoP key: send it with the DPoP scheme and a proof",
    REQUIRED: "this resource requires DPoP-bound tokens",
    NOT_BOUND: "the token is not bound to a DPoP key: send it with the Bearer scheme",
}
"""The ``error_description`` of a token refused for its scheme, by decision reason."""
_NOT_ACCEPTED = "DPoP-bound tokens are not accepted here"

_LIFESPAN_ENDS = frozenset(
    {"lifespan.startup.failed", "lifespan.shutdown.complete", "lifespan.shutdown.failed"}
)


def _error_fields(error: InvalidTokenError) -> dict[str, Any]:
    """What a refused token's error says about it (see :func:`annotate_refusal`):
    ``kid``/``alg``, and ``client_id``/``subject``/``details`` once the signature verified."""
    return {
        "kid": error.kid,
        "alg": error.alg,
        "client_id": error.client_id,
        "subject": error.subject,
        "details": error.details,
    }


class TokenUser(BaseUser):
    """``request.user`` of a request with a valid token; ``.token`` is the AccessToken."""

    __slots__ = ("token",)

    def __init__(self, token: AccessToken) -> None:
        self.token = token

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        """The subject (``sub``), else the client id, else an empty string."""
        return self.token.subject or self.token.client_id or ""

    @property
    def identity(self) -> str:
        """Same as :attr:`display_name`: ``sub``, else the client id."""
        return self.token.subject or self.token.client_id or ""

    @property
    def scopes(self) -> frozenset[str]:
        """The scopes the token grants."""
        return self.token.scopes

    def __repr__(self) -> str:
        return f"TokenUser({self.token!r})"


FORM_SCAN_LIMIT = 64 * 1024
"""Form bodies up to this size are read to refuse a second ``access_token``; larger ones
stream on unchecked (buffering them whole would let any client make us hold them)."""


async def _buffer_body(receive: Receive, limit: int) -> tuple[bytes | None, Receive]:
    """Read the request body up to ``limit`` bytes; return it (None when it is larger or
    the client left) and a ``receive`` that replays what was read, then goes on reading."""
    pending: list[Message] = []
    chunks: list[bytes] = []
    size = 0
    complete = False
    while size <= limit:
        message = await receive()
        pending.append(message)
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            complete = size <= limit
            break

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return (b"".join(chunks) if complete else None), replay


async def _form_names_a_token(receive: Receive) -> tuple[bool, Receive]:
    """Whether a form body up to :data:`FORM_SCAN_LIMIT` names an ``access_token``, and the
    ``receive`` that replays what was read (RFC 6750 §2.2: one method per request)."""
    body, receive = await _buffer_body(receive, FORM_SCAN_LIMIT)
    return body is not None and has_access_token_parameter(body), receive


def _with_nonce(send: Send, nonce: str) -> Send:
    """``send`` adding ``DPoP-Nonce: <nonce>`` to the response's headers (RFC 9449 §8.2:
    a fresh nonce before the client's one expires)."""
    header = (b"dpop-nonce", nonce.encode("ascii"))

    async def send_with_nonce(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), header]}
        await send(message)

    return send_with_nonce


def _route_path(path: str, root: str) -> str:
    """The path the app routes on: ``path`` without the ``root_path`` prefix."""
    if path.startswith(root):
        if len(path) == len(root):
            return "/"
        if path[len(root)] == "/":
            return path[len(root) :]
    return path


def _plain_path(path: str) -> bool:
    """True when ``path`` has no empty segment (``//``) and no ``.`` or ``..`` segment.

    Dot-named segments (``/.well-known``, ``/.hidden``, ``/a..b``) are ordinary names.
    On the safe side, ``\\`` counts as a separator too and a segment's ``;`` parameters
    are ignored, so ``/x/..\\admin`` and ``/x/..;/admin`` count as ``..`` segments.
    """
    if "\\" in path:
        path = path.replace("\\", "/")
    if "//" in path:
        return False
    if "/." not in path:
        return True
    for segment in path.split("/"):
        if segment[:1] == "." and segment.partition(";")[0] in (".", ".."):
            return False
    return True


def _public_rules(public_paths: Iterable[str]) -> tuple[frozenset[str], tuple[str, ...]]:
    if isinstance(public_paths, str | bytes):
        raise TypeError('public_paths must be a sequence of paths, e.g. ("/health",)')
    exact: set[str] = set()
    prefixes: list[str] = []
    for path in public_paths:
        if not isinstance(path, str):
            raise TypeError(f"public_paths entries must be str, got {type(path).__name__}")
        if not path.startswith("/") or "?" in path or "#" in path:
            raise ValueError(f"public path {path!r} must start with '/' and have no query")
        if path.endswith("/*"):
            base = path[:-2]
            if "*" in base:
                raise ValueError(f"public path {path!r}: '*' is only allowed as a final '/*'")
            if base:
                exact.add(base)
            prefixes.append(base + "/")
        elif "*" in path:
            raise ValueError(f"public path {path!r}: '*' is only allowed as a final '/*'")
        else:
            exact.add(path)
    return frozenset(exact), tuple(prefixes)


class BearerAuthMiddleware:
    """Require a valid bearer token on every HTTP request and WebSocket not public.

    Args:
        app: the ASGI app to protect.
        verifier: a :class:`~resource_guard.TokenVerifier`, or anything with its async
            ``verify``/``start``/``aclose`` and, optionally, its no-wait ``cached``
            (see :class:`Verifier`). Only this public API is used: a ``verify`` set on
            the instance, patched or overridden runs for every request.
        public_paths: paths served without a token. ``"/health"`` matches exactly that
            path; ``"/docs/*"`` matches ``/docs`` and everything under ``/docs/``, dot-named
            segments included (``"/.well-known/*"`` covers ``/.well-known/security.txt``;
            the RFC 9728 document needs no entry: see ``resource_metadata``), but no path
            with an empty segment (``//``) or a ``.``/``..`` segment (``/docs/../admin``
            stays protected).
            Default: none, every path is protected (FastAPI's ``/docs`` and
            ``/openapi.json`` included).
        allow_anonymous: let requests *without* credentials through, with
            ``request.user`` unauthenticated and no token, so routes decide (for example
            with ``require_scopes``). Invalid tokens are still refused.
        realm: the ``realm`` of every ``WWW-Authenticate`` challenge.
        manage_verifier: start the verifier at lifespan start-up (eager key fetch) and
            close it at shutdown. Set False when you manage it yourself.
        on_decision: called with a :class:`~resource_guard.Decision` for every request
            the middleware (or a route's ``require_scopes``) allows or refuses; public
            paths make none. Synchronous, on the event loop: keep it quick. What it
            raises is logged and changes nothing about the request.
        resource_metadata: a :class:`~resource_guard.ProtectedResourceMetadata` to serve
            (RFC 9728): the middleware answers GET and HEAD on its well-known path itself
            (with or without ``root_path``), without a token and without calling the app,
            and every ``WWW-Authenticate`` challenge names its URL in
            ``resource_metadata``. Its ``authorization_servers`` default to the verifier's
            issuer(s); its ``resource`` must be one of the verifier's audiences.
        public_url: the scheme and host clients use to reach the app, such as
            ``"https://api.example.com"``: what DPoP proofs (``htu``) are checked against.
            The request's path (``root_path`` included) follows it.
        trusted_proxies: IP addresses of reverse proxies whose ``Forwarded`` or
            ``X-Forwarded-Proto``/``X-Forwarded-Host`` headers say the scheme and host
            (honoured only when the connection comes from one of them). Without this or
            ``public_url``, the ASGI scheme and ``Host`` header are used.

    DPoP (RFC 9449) follows the verifier's ``dpop_policy(token)`` (a
    :class:`~resource_guard.dpop.DPoPPolicy`; see docs/dpop.md); a verifier without that
    method gets an ``"allowed"`` policy with an in-memory replay store.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        verifier: Verifier,
        public_paths: Iterable[str] = (),
        allow_anonymous: bool = False,
        realm: str = "api",
        manage_verifier: bool = True,
        on_decision: DecisionHook | None = None,
        resource_metadata: ProtectedResourceMetadata | None = None,
        public_url: str | None = None,
        trusted_proxies: Iterable[str] = (),
    ) -> None:
        if not callable(getattr(verifier, "verify", None)):
            raise TypeError("verifier must be a TokenVerifier (an object with async verify())")
        if not isinstance(allow_anonymous, bool):
            raise TypeError("allow_anonymous must be a bool")
        if not isinstance(manage_verifier, bool):
            raise TypeError("manage_verifier must be a bool")
        if on_decision is not None and not callable(on_decision):
            raise TypeError("on_decision must be callable: Decision -> None")
        if not isinstance(realm, str):
            raise TypeError("realm must be a str")
        if not realm or not realm.isascii() or not realm.isprintable():
            raise ValueError("realm must be a non-empty string of printable ASCII")
        self.app = app
        self.verifier = verifier
        # A token verified before is answered without a coroutine when the verifier can
        # (TokenVerifier.cached: None while verify() is overridden); else verify() decides.
        # An async "cached" (an AsyncMock verifier, say) breaks the contract: not used.
        cached = getattr(verifier, "cached", None)
        self._cached: Callable[[bytes], AccessToken | None] | None = (
            cached if callable(cached) and not inspect.iscoroutinefunction(cached) else None
        )
        self._exact, self._prefixes = _public_rules(public_paths)
        self._anonymous = allow_anonymous
        self._manage = manage_verifier
        self._hook = on_decision
        self._metadata: MetadataEndpoint | None = None
        metadata_url = None
        if resource_metadata is not None:
            if not isinstance(resource_metadata, ProtectedResourceMetadata):
                raise TypeError("resource_metadata must be a ProtectedResourceMetadata")
            bound = resource_metadata.for_verifier(verifier)
            self._metadata = MetadataEndpoint(bound, routes_app=app)
            metadata_url = bound.url
        # DPoP: the verifier's policy per token, else one of our own for every token.
        # An async "dpop_policy" (an AsyncMock) or one not answering a DPoPPolicy: not used.
        policy_of = getattr(verifier, "dpop_policy", None)
        if not callable(policy_of) or inspect.iscoroutinefunction(policy_of):
            policy_of = None
        default = None if policy_of is None else policy_of(None)
        if not isinstance(default, DPoPPolicy):
            default = DPoPPolicy()
            policy_of = None
        self._policy = default
        self._policy_of: Callable[[AccessToken | None], DPoPPolicy] = policy_of or (
            lambda _token: default
        )
        self._urls = RequestURL(public_url, trusted_proxies)
        self._replies = BearerReplies(
            realm,
            resource_metadata=metadata_url,
            dpop_algs=default.algorithms if default.enabled else (),
            bearer=default.bearer_allowed,
        )
        # Whether any request may skip the token check: public paths or the metadata.
        self._public = bool(self._exact or self._prefixes)
        self._detours = self._public or self._metadata is not None

    @property
    def realm(self) -> str:
        """The challenge realm."""
        return self._replies.realm

    @property
    def resource_metadata(self) -> ProtectedResourceMetadata | None:
        """The protected-resource metadata served (its issuers filled in), or None."""
        return None if self._metadata is None else self._metadata.metadata

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self._pass_through(scope, receive, send)
            return
        replies = self._replies
        scope[REPLIES_KEY] = replies
        scope[APP_KEY] = scope.get("app")
        if self._detours and (detour := self._detour(scope)) is not None:
            await detour(scope, receive, send)  # the metadata, or a public path
            return
        started = perf_counter() if self._hook is not None else 0.0  # timing for a hook only
        headers = scope.get("headers") or ()
        query = scope.get("query_string") or b""
        # A token verified before: no parsing, no coroutine (the common case). A request
        # with a query string takes the careful path, which checks it for access_token.
        token = self._cached_token(headers) if self._cached is not None and not query else None
        raw = ""
        dpop_scheme = False
        if token is None:
            extracted = await self._credentials(scope, receive, send, query, started)
            if extracted is None:
                return  # answered: 400, 401, or the app for an anonymous request
            raw, dpop_scheme = extracted
        if kind == "http" and scope["method"] not in BODYLESS_METHODS and has_form_body(headers):
            named, receive = await _form_names_a_token(receive)
            if named:
                await self._bad_request(scope, receive, send, TWO_METHODS, started)
                return
        if token is None:
            outcome = await self._verify(raw, scope, started, dpop_scheme)
            if isinstance(outcome, Reply):
                await send_reply(scope, receive, send, outcome)
                return
            token = outcome
        # DPoP: the only cost for a plain bearer token is its policy and one claim lookup.
        policy = self._policy_of(token)
        checked = (
            await self._dpop(scope, send, token, raw, dpop_scheme, policy, started)
            if dpop_scheme or not policy.bearer_allowed or "cnf" in token.claims
            else send
        )
        if isinstance(checked, Reply):
            await send_reply(scope, receive, send, checked)
            return
        send = checked  # the same, or one adding a fresh DPoP-Nonce
        if self._hook is not None or decisions_logger.isEnabledFor(_DEBUG):
            # raw is set only when verify() decided; else cached() answered.
            self._allowed(scope, token, "verified" if raw else "cached", started)
        scope["auth"] = AuthCredentials(sorted(token.scopes))
        scope["user"] = TokenUser(token)
        scope[ACCESS_TOKEN_KEY] = token
        try:
            await self.app(scope, receive, send)
        except AccessRefused as refusal:  # raised before the route answered
            await send_reply(scope, receive, send, refusal.reply)

    def _cached_token(self, headers: Iterable[tuple[bytes, bytes]]) -> AccessToken | None:
        """The verifier's answer for the one ``Authorization: Bearer <token>`` header's
        unchecked bytes; None for any other shape, a miss, or a ``cached`` that failed."""
        quick = quick_token(headers)
        if quick is None or self._cached is None:
            return None
        try:
            found = self._cached(quick)
        except Exception as exc:  # a verifier's bug: verify() decides instead
            logger.error(
                "the verifier's cached() failed (%s); verifying the token instead",
                type(exc).__name__,
                exc_info=exc,
            )
            return None
        return found if isinstance(found, AccessToken) else None

    async def _no_credentials(
        self, scope: Scope, receive: Receive, send: Send, started: float
    ) -> None:
        if self._anonymous:
            if self._hook is not None:
                scope[OBSERVER_KEY] = (self._hook, started)  # for a route's refusal
            self._report(scope, "allowed", "anonymous", None, started)
            await self._pass_anonymous(scope, receive, send)
        else:
            self._report(scope, "refused", "missing_token", 401, started)
            await send_reply(scope, receive, send, self._replies.missing)

    async def _bad_request(
        self, scope: Scope, receive: Receive, send: Send, description: str, started: float
    ) -> None:
        """400 ``invalid_request``; the decision names the problem (``two_methods``...)."""
        problem = _REQUEST_PROBLEMS.get(description, "other")
        self._report(scope, "refused", "invalid_request", 400, started, {"problem": problem})
        reply = self._replies.invalid_request(
            description, dpop=description in _DPOP_SCHEME_PROBLEMS
        )
        await send_reply(scope, receive, send, reply)

    # -- decisions ---------------------------------------------------------------------

    def _report(
        self,
        scope: Scope,
        outcome: Literal["allowed", "refused"],
        reason: str,
        status: int | None,
        started: float,
        details: dict[str, str] | None = None,
        error: InvalidTokenError | None = None,
        token: AccessToken | None = None,
    ) -> None:
        """Log the decision and hand it to the hook (nothing is built when neither wants it).
        ``token``: the verified token of a refusal after verification (DPoP)."""
        hook = self._hook
        level = logging.INFO if outcome == "refused" else _DEBUG
        if hook is None and not decisions_logger.isEnabledFor(level):
            return
        method, path = decision_path(scope)
        fields: dict[str, Any] = {
            "details": MappingProxyType(details) if details else EMPTY_DETAILS
        }
        if error is not None:
            fields.update(_error_fields(error))
        if token is not None:
            fields.update(client_id=token.client_id, subject=token.subject, kid=token.key_id)
        duration = None if hook is None else perf_counter() - started
        emit(Decision(outcome, reason, status, method, path, duration=duration, **fields), hook)

    def _allowed(self, scope: Scope, token: AccessToken, reason: str, started: float) -> None:
        hook = self._hook
        if hook is not None:
            scope[OBSERVER_KEY] = (hook, started)  # a route's refusal reports to it too
        method, path = decision_path(scope)
        decision = Decision(
            "allowed",
            reason,
            None,
            method,
            path,
            client_id=token.client_id,
            subject=token.subject,
            kid=token.key_id,
            duration=None if hook is None else perf_counter() - started,
        )
        emit(decision, hook)

    async def _pass_through(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Lifespan (starting and closing the verifier when managed) and other scopes."""
        if scope["type"] == "lifespan" and self._manage:
            await self._lifespan(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _verify(
        self, raw: str, scope: Scope, started: float, dpop_scheme: bool = False
    ) -> AccessToken | Reply:
        """The verified token, or the reply refusing it (its decision reported): for the
        ``DPoP`` scheme, with the ``DPoP`` challenge holding the error."""
        replies = self._replies
        try:
            return await self.verifier.verify(raw)
        except InvalidTokenError as exc:
            self._report(scope, "refused", exc.code, 401, started, error=exc)
            policy = self._policy
            if dpop_scheme and policy.enabled:
                return replies.dpop_error(
                    "invalid_token",
                    exc.description,
                    algs=policy.algorithms,
                    bearer=policy.bearer_allowed,
                )
            return replies.invalid_token(exc.description)
        except VerificationUnavailableError as exc:
            return self._unavailable(scope, exc, started)
        except Exception as exc:
            return self._failed(scope, exc, started, "token verification")

    def _unavailable(
        self, scope: Scope, exc: VerificationUnavailableError, started: float
    ) -> Reply:
        """503 with ``Retry-After``: keys, introspection or the replay store are down."""
        retry = {"retry_after": f"{exc.retry_after:.0f}"}
        self._report(scope, "refused", exc.code, 503, started, retry)
        return self._replies.keys_unavailable(exc.retry_after)

    def _failed(self, scope: Scope, exc: Exception, started: float, what: str) -> Reply:
        """503 for a bug or an unforeseen failure: no detail sent, logged without the token."""
        logger.error(
            "%s failed unexpectedly (%s); answering 503", what, type(exc).__name__, exc_info=exc
        )
        error = {"error": type(exc).__name__[:60]}
        self._report(scope, "refused", "verifier_error", 503, started, error)
        return self._replies.unavailable

    async def _dpop(
        self,
        scope: Scope,
        send: Send,
        token: AccessToken,
        raw: str,
        dpop_scheme: bool,
        policy: DPoPPolicy,
        started: float,
    ) -> Reply | Send:
        """DPoP (RFC 9449) for a verified token: may it come with this scheme, then (for
        the ``DPoP`` scheme) its proof. A Reply refuses (the decision reported); else the
        ``send`` for the app's reply (adding a fresh ``DPoP-Nonce`` when one is due)."""
        replies = self._replies
        jkt = bound_key(token.claims)
        refusal = policy.refusal(dpop_scheme=dpop_scheme, jkt=jkt)
        if refusal is not None:
            self._report(scope, "refused", refusal, 401, started, token=token)
            if refusal == DISABLED:
                return replies.invalid_token(_NOT_ACCEPTED)
            return replies.dpop_error(
                "invalid_token",
                _SCHEME_REFUSALS[refusal],
                algs=policy.algorithms,
                bearer=policy.bearer_allowed,
            )
        if not dpop_scheme or jkt is None:
            return send  # a bearer token bound otherwise (cnf without jkt: mTLS)
        method = scope["method"] if scope["type"] == "http" else "GET"  # a WebSocket handshake
        try:
            proof = await policy.check(
                dpop_proof(scope.get("headers") or ()),
                method=method,
                url=self._urls.url(scope),
                access_token=raw,
                jkt=jkt,
            )
        except UseDPoPNonceError as exc:
            self._report(scope, "refused", exc.code, 401, started, token=token)
            return replies.dpop_error(
                exc.code,
                exc.message,
                algs=policy.algorithms,
                bearer=policy.bearer_allowed,
                nonce=exc.nonce,
            )
        except InvalidDPoPProofError as exc:
            reason = _PROOF_REASONS.get(exc.message, exc.code)
            problem = {"problem": clean(exc.message)}
            self._report(scope, "refused", reason, 401, started, problem, token=token)
            return replies.dpop_error(
                exc.code, exc.message, algs=policy.algorithms, bearer=policy.bearer_allowed
            )
        except VerificationUnavailableError as exc:
            return self._unavailable(scope, exc, started)
        except Exception as exc:
            return self._failed(scope, exc, started, "the DPoP proof check")
        # A route's scope refusal of this request goes on the DPoP challenge (§7.1).
        scope[REPLIES_KEY] = replies.for_dpop(policy.algorithms, policy.bearer_allowed)
        nonce = policy.next_nonce(proof)
        return send if nonce is None else _with_nonce(send, nonce)

    async def _credentials(
        self, scope: Scope, receive: Receive, send: Send, query: bytes, started: float
    ) -> tuple[str, bool] | None:
        """``(token, dpop scheme)`` of the request; None once it was answered (400 for a
        malformed request, 401 without credentials, the app for an anonymous one)."""
        try:
            extracted = extract_credentials(scope.get("headers") or (), query)
        except BearerRequestError as exc:
            await self._bad_request(scope, receive, send, exc.description, started)
            return None
        if extracted is None:
            await self._no_credentials(scope, receive, send, started)
        return extracted

    def _detour(self, scope: Scope) -> ASGIApp | None:
        """What answers a request that needs no token: the metadata endpoint for its
        document (the app never runs), the app itself for a public path; else None."""
        metadata = self._metadata
        if (
            metadata is not None
            and scope["path"].endswith(metadata.path)
            and metadata.matches(scope)
        ):
            return metadata
        if self._public and self._is_public(scope):
            return self._pass_anonymous
        return None

    def _is_public(self, scope: Scope) -> bool:
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        if root:
            path = _route_path(path, root)
        if path in self._exact:
            return True
        return bool(self._prefixes and path.startswith(self._prefixes) and _plain_path(path))

    async def _pass_anonymous(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["auth"] = AuthCredentials()
        scope["user"] = UnauthenticatedUser()
        scope[ACCESS_TOKEN_KEY] = None
        try:
            await self.app(scope, receive, send)
        except AccessRefused as refusal:
            await send_reply(scope, receive, send, refusal.reply)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass lifespan through; start the verifier before the app's start-up runs, close
        it after the app's shutdown finished (or its start-up failed).

        A verifier that fails to start (``fail_fast`` and a misconfiguration) is logged on
        ``resource_guard.middleware`` and answered with ``lifespan.startup.failed``, so the
        server stops instead of serving without keys; the app's start-up never runs."""
        verifier = self.verifier
        started = closed = shutting_down = False
        failure: Exception | None = None

        async def close() -> None:
            nonlocal closed
            if started and not closed:
                closed = True
                await verifier.aclose()

        async def receive_lifespan() -> Message:
            nonlocal started, shutting_down, failure
            message = await receive()
            if message["type"] == "lifespan.startup":
                started = True
                try:
                    await verifier.start()
                except Exception as exc:
                    failure = exc
                    logger.critical("start-up failed: the verifier did not start: %s", exc)
                    await close()
                    await send({"type": "lifespan.startup.failed", "message": f"{exc}"})
                    raise
            else:  # the only other lifespan message: lifespan.shutdown
                shutting_down = True
            return message

        async def send_lifespan(message: Message) -> None:
            if failure is not None:
                return  # start-up failed and was answered: nothing more goes out
            if message["type"] in _LIFESPAN_ENDS:
                await close()
            await send(message)

        try:
            await self.app(scope, receive_lifespan, send_lifespan)
        except Exception as exc:
            if exc is not failure:
                raise  # the verifier's failure was answered with startup.failed
        finally:
            if shutting_down:
                await close()
