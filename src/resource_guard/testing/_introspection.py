"""The fake issuer's opaque tokens: issuing them, RFC 7662 introspection (JSON and RFC 9701
JWT answers), RFC 7009 revocation, and the client authentication both endpoints demand.

:class:`OpaqueTokens` is a part of :class:`~resource_guard.testing.FakeIssuer` (a base
class): its state lives here, the issuer routes ``/introspect`` and ``/revoke`` to
:meth:`OpaqueTokens._opaque_reply` and adds :meth:`OpaqueTokens._opaque_metadata` to its
discovery documents.
"""

from __future__ import annotations

import secrets
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from .._algorithms import ALGORITHMS
from .._client_auth import ASSERTION_TYPE, CLIENT_AUTH_METHODS
from .._jwk import public_jwk
from .._jws import TokenParser, decode_payload, read_unverified
from .._token_cache import token_digest
from ..exceptions import MalformedTokenError
from ._checks import audience_value, non_empty_str
from ._http import HTTPReply, HTTPRequest, json_reply
from ._keys import SigningKey
from ._token_endpoint import (
    OAuthError,
    RegisteredClient,
    authenticate_client,
    error_reply,
    read_form,
)
from ._tokens import CURRENT, access_token_claims, sign

__all__ = [
    "INTROSPECTION_ENDPOINTS",
    "JWT_ANSWER_TYPE",
    "ClientKey",
    "IntrospectionHook",
    "JWTAnswerHook",
    "OpaqueTokens",
]

INTROSPECTION_ENDPOINTS: Final = ("introspection", "revocation")
"""The endpoint names (keys of ``FakeIssuer.counts``) this part serves."""
JWT_ANSWER_TYPE: Final = "application/token-introspection+jwt"
"""The media type of an RFC 9701 answer (asked for with ``Accept``)."""

IntrospectionHook = Callable[[dict[str, Any]], dict[str, Any]]
"""Rewrites each introspection answer (the JSON document) before it is sent or signed."""
JWTAnswerHook = Callable[[dict[str, Any], dict[str, Any]], None]
"""Edits an RFC 9701 answer's claims and header (both dicts, in place) before signing."""
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
ClientKey = SigningKey | PublicKey
"""A client's key for ``private_key_jwt``: a :class:`SigningKey` or a public key."""

_ASSERTION_PARSER = TokenParser(16 * 1024)
_MAX_JTIS = 10_000


def _public(key: object) -> PublicKey:
    if isinstance(key, SigningKey):
        return key.private_key.public_key()
    if isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        return key
    raise TypeError("key must be a SigningKey or an RSA, EC or Ed25519 public key")


def _signature_holds(key: PublicKey, token: str) -> dict[str, Any] | None:
    """The claims of compact JWS ``token`` when ``key`` verifies its signature, else None."""
    try:
        header, payload, signing_input, signature = _ASSERTION_PARSER.split(token)
    except MalformedTokenError:
        return None
    algorithm = ALGORITHMS.get(header.alg)
    kind = public_jwk(key)
    if algorithm is None or algorithm.kty != kind["kty"]:
        return None
    if algorithm.curves and kind.get("crv") not in algorithm.curves:
        return None
    if not algorithm.verify(key, signing_input, signature):
        return None
    try:
        return decode_payload(payload)
    except MalformedTokenError:
        return None


class OpaqueTokens:
    """Opaque tokens, introspection and revocation for the fake issuer."""

    if TYPE_CHECKING:  # provided by FakeIssuer
        clock: Callable[[], float]
        counts: Counter[str]

        @property
        def issuer(self) -> str: ...
        @property
        def audience(self) -> str | tuple[str, ...]: ...
        @property
        def token_endpoint(self) -> str: ...
        @property
        def keys(self) -> list[SigningKey]: ...
        @property
        def current_key(self) -> SigningKey: ...
        def _clients_snapshot(self) -> dict[str, RegisteredClient]: ...

    def _setup_opaque_tokens(self) -> None:
        self._opaque_lock = threading.RLock()
        self._opaque: dict[str, dict[str, Any]] = {}
        self._revoked: set[bytes] = set()
        self._client_keys: dict[str, PublicKey] = {}
        self._assertion_ids: set[str] = set()
        self.opaque_tokens = False
        """True: the token endpoint issues opaque tokens instead of JWTs."""
        self.introspection_hook: IntrospectionHook | None = None
        """Rewrites every introspection answer before it is sent, e.g.
        ``lambda answer: {**answer, "active": "true"}`` (None: answers as they are)."""
        self.introspection_jwt_hook: JWTAnswerHook | None = None
        """Edits an RFC 9701 answer's ``(claims, header)`` in place before it is signed."""
        self.introspection_signing_key: SigningKey | None = None
        """The key RFC 9701 answers are signed with (None: :attr:`current_key`)."""

    # URLs and counts ----------------------------------------------------------------------

    @property
    def introspection_endpoint(self) -> str:
        """The RFC 7662 introspection endpoint URL."""
        return self.token_endpoint.removesuffix("/token") + "/introspect"

    @property
    def revocation_endpoint(self) -> str:
        """The RFC 7009 revocation endpoint URL."""
        return self.token_endpoint.removesuffix("/token") + "/revoke"

    @property
    def introspection_count(self) -> int:
        """How many requests reached the introspection endpoint."""
        return self.counts["introspection"]

    @property
    def revocation_count(self) -> int:
        """How many requests reached the revocation endpoint."""
        return self.counts["revocation"]

    # Tokens -------------------------------------------------------------------------------

    def issue_opaque(
        self,
        subject: str | None = "user-123",
        *,
        scopes: str | Iterable[str] = (),
        audience: str | Sequence[str] | None = None,
        expires_in: int = 300,
        client_id: str | None = None,
        claims: Mapping[str, Any] | None = None,
        omit: Iterable[str] = (),
        token_type: str = "Bearer",
    ) -> str:
        """A new opaque (reference) token: random, meaningless to its holder; the
        introspection endpoint answers for it with ``active: true`` and its claims
        (``iss``, ``sub``, ``aud``, ``iat``, ``exp``, ``jti``, ``client_id``, ``scope``,
        ``token_type``; ``claims`` adds or overrides, ``omit`` removes) until it expires
        or is revoked. ``token_type="refresh_token"`` makes one a resource server must
        refuse."""
        if claims is not None and not isinstance(claims, Mapping):
            raise TypeError("claims must be a mapping of names to values (a dict), or None")
        record = access_token_claims(
            issuer=self.issuer,
            subject=subject,
            audience=self.audience if audience is None else audience_value("audience", audience),
            now=self.clock(),
            expires_in=expires_in,
            client_id=client_id,
            scopes=scopes,
        )
        record["token_type"] = non_empty_str("token_type", token_type)
        record.update(claims or {})
        for name in omit:
            record.pop(name, None)
        token = "op_" + secrets.token_urlsafe(32)
        with self._opaque_lock:
            self._opaque[token] = record
        return token

    def _issue_granted(
        self,
        subject: str,
        *,
        client_id: str,
        scopes: tuple[str, ...],
        audience: str | Sequence[str] | None,
        expires_in: int,
        dpop_key: str | None,
    ) -> str:
        """The token endpoint's opaque token (:attr:`opaque_tokens`), bound to the DPoP
        key's thumbprint ``dpop_key`` when there is one (``cnf.jkt``, RFC 9449 §6.2)."""
        return self.issue_opaque(
            subject,
            client_id=client_id,
            scopes=scopes,
            audience=audience,
            expires_in=expires_in,
            claims=None if dpop_key is None else {"cnf": {"jkt": dpop_key}},
        )

    def revoke(self, token: str) -> None:
        """Revoke ``token`` (opaque or a JWT this issuer minted): from now on the
        introspection endpoint says it is not active."""
        with self._opaque_lock:
            self._revoked.add(token_digest(non_empty_str("token", token).encode()))

    def register_client_key(self, client_id: str, key: ClientKey) -> None:
        """Let ``client_id`` authenticate with ``private_key_jwt`` assertions (RFC 7523)
        signed by ``key`` (a :class:`SigningKey`, or the public key of one you hold)."""
        public = _public(key)
        with self._opaque_lock:
            self._client_keys[non_empty_str("client_id", client_id)] = public

    def introspect(self, token: str) -> dict[str, Any]:
        """The introspection answer for ``token`` (before :attr:`introspection_hook`):
        ``{"active": true, ...claims}`` for a live opaque token or a JWT this issuer
        signed, else ``{"active": false}``."""
        now = self.clock()
        with self._opaque_lock:
            record = self._opaque.get(token)
            revoked = token_digest(token.encode()) in self._revoked
        if record is None:
            record = self._own_jwt_claims(token)
        if record is None or revoked:
            return {"active": False}
        exp, nbf = record.get("exp"), record.get("nbf")
        if isinstance(exp, int | float) and exp <= now:
            return {"active": False}
        if isinstance(nbf, int | float) and nbf > now:
            return {"active": False}
        return {"active": True, **record}

    def _own_jwt_claims(self, token: str) -> dict[str, Any] | None:
        for key in self.keys:
            claims = _signature_holds(key.private_key.public_key(), token)
            if claims is not None:
                return claims
        return None

    # Endpoints ----------------------------------------------------------------------------

    def _opaque_metadata(self) -> dict[str, Any]:
        methods = list(CLIENT_AUTH_METHODS)
        return {
            "introspection_endpoint": self.introspection_endpoint,
            "introspection_endpoint_auth_methods_supported": methods,
            "introspection_signing_alg_values_supported": sorted({k.alg for k in self.keys}),
            "revocation_endpoint": self.revocation_endpoint,
            "revocation_endpoint_auth_methods_supported": methods,
        }

    def _opaque_reply(self, endpoint: str, request: HTTPRequest) -> HTTPReply:
        """Answer a request to the introspection or the revocation endpoint."""
        try:
            if request.method != "POST":
                raise OAuthError(405, "invalid_request", f"the {endpoint} endpoint takes POST")
            form = read_form(request)
            client_id = self._authenticate(request, form)
            token = form.get("token")
            if not token:
                raise OAuthError(400, "invalid_request", "the token parameter is missing")
        except OAuthError as exc:
            return error_reply(exc)
        if endpoint == "revocation":
            return self._revocation_reply(token, client_id)
        answer = self.introspect(token)
        if self.introspection_hook is not None:
            answer = self.introspection_hook(answer)
        accepts = ",".join(request.header_values("accept")).lower()
        if JWT_ANSWER_TYPE in accepts:
            return self._jwt_answer(answer, client_id)
        return json_reply(200, answer, ("cache-control", "no-store"))

    def _revocation_reply(self, token: str, client_id: str) -> HTTPReply:
        with self._opaque_lock:
            record = self._opaque.get(token)
        owner = None if record is None else record.get("client_id")
        if owner is not None and owner != client_id:
            return error_reply(
                OAuthError(400, "unauthorized_client", "the token was issued to another client")
            )
        self.revoke(token)
        return HTTPReply(200, (("cache-control", "no-store"),), b"")

    def _jwt_answer(self, answer: dict[str, Any], client_id: str) -> HTTPReply:
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": client_id,
            "iat": int(self.clock()),
            "token_introspection": answer,
        }
        header: dict[str, Any] = {}
        if self.introspection_jwt_hook is not None:
            self.introspection_jwt_hook(claims, header)
        key = self.introspection_signing_key or self.current_key
        body = sign(
            claims,
            algorithm=key.alg,
            key=key,
            kid=CURRENT,
            typ="token-introspection+jwt",
            headers=header,
        )
        return HTTPReply(200, (("content-type", JWT_ANSWER_TYPE),), body.encode("ascii"))

    def _authenticate(self, request: HTTPRequest, form: Mapping[str, str]) -> str:
        """The id of the client the request authenticates; OAuthError (401) otherwise."""
        if "client_assertion" not in form and "client_assertion_type" not in form:
            return authenticate_client(request, form, self._clients_snapshot()).client_id
        return self._check_assertion(request, form)

    def _check_assertion(self, request: HTTPRequest, form: Mapping[str, str]) -> str:
        refused = OAuthError(401, "invalid_client", "client authentication failed")
        assertion = form.get("client_assertion", "")
        if form.get("client_assertion_type") != ASSERTION_TYPE or request.header_values(
            "authorization"
        ):
            raise OAuthError(400, "invalid_request", "malformed private_key_jwt request")
        try:
            unverified = read_unverified(assertion)[1]
        except MalformedTokenError:
            raise refused from None
        client_id = form.get("client_id") or unverified.get("iss")
        with self._opaque_lock:
            key = self._client_keys.get(client_id) if isinstance(client_id, str) else None
        claims = None if key is None else _signature_holds(key, assertion)
        if claims is None or not isinstance(client_id, str):
            raise refused
        aud = claims.get("aud")
        audiences = aud if isinstance(aud, list) else [aud]
        targets = {
            self.issuer,
            self.token_endpoint,
            self.introspection_endpoint,
            self.revocation_endpoint,
        }
        exp, jti = claims.get("exp"), claims.get("jti")
        if (
            claims.get("iss") != client_id
            or claims.get("sub") != client_id
            or targets.isdisjoint(a for a in audiences if isinstance(a, str))
            or not isinstance(exp, int | float)
            or exp <= self.clock()
            or not isinstance(jti, str)
        ):
            raise refused
        with self._opaque_lock:
            if jti in self._assertion_ids:
                raise refused  # replayed
            if len(self._assertion_ids) >= _MAX_JTIS:
                self._assertion_ids.clear()
            self._assertion_ids.add(jti)
        return client_id
