"""FakeIssuer: a standards-shaped OAuth 2.0 authorization server for tests.

State (keys, clients, faults, counts) lives here behind locks; the endpoints answer
through :meth:`FakeIssuer._respond`, which both ways of serving share.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final
from urllib.parse import urlsplit

import httpx

from ..dpop import DPoPKey
from ._checks import (
    audience_value,
    integer,
    non_empty_str,
    one_of,
    renamed,
    renamed_in,
    scope_tuple,
    seconds,
)
from ._dpop import TokenEndpointDPoP, dpop_headers, jkt_of, with_nonce
from ._faults import ENDPOINTS, Fault
from ._http import HTTPReply, HTTPRequest, cors_preflight, json_reply, with_cors
from ._introspection import INTROSPECTION_ENDPOINTS, OpaqueTokens
from ._keyring import KeyRing
from ._keys import SUPPORTED_ALGORITHMS, SigningKey, check_algorithm, generate_key
from ._server import LoopbackServer, ServeContext
from ._shapes import SHAPES, apply_shape, shape_headers
from ._token_endpoint import (
    OAuthError,
    RegisteredClient,
    authorize,
    token_reply,
)
from ._tokens import CURRENT, Current, access_token_claims, sign
from ._transport import FakeIssuerTransport

__all__ = ["DEFAULT_AUDIENCE", "DEFAULT_ISSUER", "FakeIssuer"]

DEFAULT_ISSUER: Final = "https://issuer.example.test"
DEFAULT_AUDIENCE: Final = "api://default"

_MOVED = "/moved"  # redirect faults point here: the same document, without the fault
_OIDC_PATH = "/.well-known/openid-configuration"
_OAUTH_PATH = "/.well-known/oauth-authorization-server"


class _Default(str):
    """A default that tells whether the caller passed the option (``is``), so that an
    option given under both of its names is refused; it reads as the plain string."""

    __slots__ = ()


_DEFAULT_ENDPOINT: Final = _Default("jwks")
_DEFAULT_TYP: Final = _Default("at+jwt")


class FakeIssuer(OpaqueTokens):
    """An OAuth 2.0 / OIDC issuer for tests: discovery, JWKS, client-credentials tokens.

    Keys are generated on first use. Serve it in-process with :meth:`transport` (or
    :meth:`client` / :meth:`async_client`) or over loopback HTTP with :meth:`serve`; mint
    any token with :meth:`mint`; make endpoints misbehave with :meth:`fault`.

    ``jwks_max_age`` (also a settable property) is the JWKS ``Cache-Control: max-age``
    (None: no header). ``metadata_overrides`` (a dict attribute) is merged into both
    metadata documents; a None value removes that member.

    ``shape`` makes every token look like one identity provider's (one of :data:`SHAPES`:
    ``okta``, ``auth0``, ``entra-v2``...): :meth:`mint` and the token endpoint put the
    client, the scopes and the audience where that provider does and add its fixed claims;
    give the issuer URL the provider's preset expects (docs/providers.md).

    DPoP (RFC 9449): a token request with a valid ``DPoP`` proof gets a token bound to the
    proof's key (``cnf.jkt``, ``token_type: DPoP``); a bad proof gets 400
    ``invalid_dpop_proof``. ``dpop_nonce=True`` (also a settable property) demands the
    issuer's nonce in proofs (400 ``use_dpop_nonce`` with ``DPoP-Nonce``). ``mint(dpop_key=)``
    and :meth:`dpop_headers` make bound tokens directly.

    The endpoints answer CORS preflights and allow any origin to read their replies, so a
    browser page (Swagger UI's Authorize button) can get tokens: a testing-only behaviour
    no real authorization server should copy (docs/testing.md).

    A keyword naming one algorithm is ``algorithm`` everywhere (``alg`` is the JOSE header
    member, as in :attr:`SigningKey.alg`); ``alg=`` still works where it used to, with a
    :class:`DeprecationWarning`.
    """

    def __init__(
        self,
        issuer: str = DEFAULT_ISSUER,
        *,
        audience: str | Sequence[str] = DEFAULT_AUDIENCE,
        algorithm: str = "RS256",
        clock: Callable[[], float] = time.time,
        jwks_max_age: int | None = 300,
        shape: str | None = None,
        dpop_nonce: bool = False,
    ) -> None:
        parts = urlsplit(non_empty_str("issuer", issuer))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("issuer must be an absolute http(s) URL such as https://idp.test")
        if parts.query or parts.fragment or "?" in issuer or "#" in issuer:
            raise ValueError("issuer must not have a query or fragment (RFC 8414 §2)")
        check_algorithm(algorithm, "algorithm")
        if not callable(clock):
            raise TypeError("clock must be a callable returning epoch seconds")
        if shape is not None:
            one_of("shape", shape, SHAPES, unknown="unknown shape")
        self._shape = shape
        self._issuer = issuer
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._path = parts.path
        self._prefix = parts.path.rstrip("/")
        self._audience = audience_value("audience", audience)
        self.clock = clock
        """Epoch-seconds clock behind ``iat``/``exp``; replace it to move time."""
        self._dpop = TokenEndpointDPoP(lambda: self.clock(), require_nonce=dpop_nonce)
        self.jwks_max_age = jwks_max_age
        self.metadata_overrides: dict[str, Any] = {}
        self._setup_opaque_tokens()  # opaque tokens, introspection, revocation
        self.counts: Counter[str] = Counter()
        """Requests per endpoint (``discovery``, ``oauth_metadata``, ``jwks``, ``token``)."""
        self._lock = threading.RLock()
        self._keys = KeyRing(algorithm)
        self._clients: dict[str, RegisteredClient] = {}
        self._faults: dict[str, Fault] = {}
        self._server: LoopbackServer | None = None

    def __repr__(self) -> str:
        return f"FakeIssuer(issuer={self.issuer!r}, algorithm={self.algorithm!r})"

    # URLs ---------------------------------------------------------------------------------

    def _current_origin(self) -> str:
        server = self._server
        return server.origin if server is not None else self._origin

    @property
    def issuer(self) -> str:
        """The ``iss`` value; ``http://127.0.0.1:PORT...`` while :meth:`serve` runs."""
        server = self._server
        return self._issuer if server is None else server.origin + self._path

    @property
    def discovery_url(self) -> str:
        """OpenID Connect discovery document URL."""
        return self._current_origin() + self._prefix + _OIDC_PATH

    @property
    def oauth_metadata_url(self) -> str:
        """RFC 8414 authorization server metadata URL."""
        return self._current_origin() + _OAUTH_PATH + self._prefix

    @property
    def jwks_uri(self) -> str:
        """The JWKS URL."""
        return self._current_origin() + self._prefix + "/jwks.json"

    @property
    def token_endpoint(self) -> str:
        """The client-credentials token endpoint URL."""
        return self._current_origin() + self._prefix + "/token"

    @property
    def audience(self) -> str | tuple[str, ...]:
        """The default ``aud`` of minted tokens."""
        return self._audience

    @property
    def shape(self) -> str | None:
        """The identity provider whose token shape :meth:`mint` follows (None: plain)."""
        return self._shape

    @property
    def jwks_max_age(self) -> int | None:
        """Seconds in the JWKS ``Cache-Control: public, max-age=N`` (None: no header)."""
        return self._jwks_max_age

    @jwks_max_age.setter
    def jwks_max_age(self, value: int | None) -> None:
        self._jwks_max_age = None if value is None else seconds("jwks_max_age", value)

    @property
    def port(self) -> int | None:
        """The loopback port while :meth:`serve` runs, else None."""
        server = self._server
        return None if server is None else server.port

    @property
    def jwks_fetches(self) -> int:
        """How many requests reached the JWKS endpoint."""
        return self.counts["jwks"]

    @property
    def dpop_nonce(self) -> bool:
        """True when the token endpoint demands its ``DPoP-Nonce`` in proofs."""
        return self._dpop.require_nonce

    @dpop_nonce.setter
    def dpop_nonce(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise TypeError("dpop_nonce must be a bool")
        self._dpop.require_nonce = value

    # Keys ---------------------------------------------------------------------------------

    @property
    def algorithm(self) -> str:
        """Algorithm of the key generated on first use (and of :meth:`rotate_keys`)."""
        return self._keys.default_algorithm

    @property
    def current_key(self) -> SigningKey:
        """The key :meth:`mint` signs with by default (created on first use)."""
        return self._keys.current

    @property
    def keys(self) -> list[SigningKey]:
        """The published signing keys, oldest first (raw JWKs not included)."""
        return self._keys.signing_keys()

    def generate_key(
        self,
        algorithm: str | None = None,
        kid: str | None = None,
        *,
        key_size: int | None = None,
        alg: str | None = None,
    ) -> SigningKey:
        """A fresh key that is *not* published: sign with it to forge tokens.

        ``algorithm`` defaults to :attr:`algorithm`; ``alg=`` is its deprecated spelling.
        """
        algorithm = renamed("algorithm", algorithm, "alg", alg)
        return generate_key(algorithm or self.algorithm, kid, key_size=key_size)

    def add_key(
        self,
        algorithm: str | SigningKey | None = None,
        kid: str | None = None,
        *,
        make_current: bool = False,
        key_size: int | None = None,
        alg: str | SigningKey | None = None,
    ) -> SigningKey:
        """Publish a new key for ``algorithm`` (default :attr:`algorithm`), or publish a
        :class:`SigningKey` you made. ``alg=`` is the deprecated spelling of
        ``algorithm=``."""
        chosen = renamed("algorithm", algorithm, "alg", alg)
        if isinstance(chosen, SigningKey):
            key = chosen
        else:
            key = generate_key(chosen or self.algorithm, kid, key_size=key_size)
        return self._keys.add(key, make_current=make_current)

    def rotate_keys(self, algorithm: str | None = None, *, alg: str | None = None) -> SigningKey:
        """Publish a new key and sign with it from now on; older keys stay published.

        ``algorithm`` defaults to the current key's; ``alg=`` is its deprecated spelling.
        """
        return self._keys.rotate(renamed("algorithm", algorithm, "alg", alg))

    def remove_key(self, kid: str) -> None:
        """Unpublish every key (and raw JWK) with this ``kid``; KeyError when none has it.

        If it was the current key, the newest remaining signing key takes over."""
        self._keys.remove(kid)

    def publish_raw_jwk(self, jwk: object) -> None:
        """Publish ``jwk`` verbatim in the JWKS (malformed, weak or private ones too)."""
        self._keys.publish_raw(jwk)

    def jwks(self) -> dict[str, Any]:
        """The JWKS document the endpoint serves."""
        return self._keys.jwks()

    def metadata(self, *, oidc: bool = True) -> dict[str, Any]:
        """The OpenID discovery document (``oidc=False``: RFC 8414 metadata)."""
        with self._lock:
            scopes = sorted({scope for c in self._clients.values() for scope in c.scopes})
            overrides = dict(self.metadata_overrides)
        document: dict[str, Any] = {
            "issuer": self.issuer,
            "jwks_uri": self.jwks_uri,
            "token_endpoint": self.token_endpoint,
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "response_types_supported": [],
            "scopes_supported": scopes,
            "dpop_signing_alg_values_supported": self._dpop.algorithms,
            **self._opaque_metadata(),
        }
        if oidc:
            document["subject_types_supported"] = ["public"]
            document["id_token_signing_alg_values_supported"] = self._keys.algorithms()
        for name, value in overrides.items():
            if value is None:
                document.pop(name, None)
            else:
                document[name] = value
        return document

    # Tokens -------------------------------------------------------------------------------

    def mint(
        self,
        subject: str | None = "user-123",
        *,
        scopes: str | Iterable[str] = (),
        audience: str | Sequence[str] | None = None,
        expires_in: int = 300,
        client_id: str | None = None,
        claims: Mapping[str, Any] | None = None,
        omit: Iterable[str] = (),
        algorithm: str | None = None,
        kid: str | Current | None = CURRENT,
        typ: str | None = _DEFAULT_TYP,
        headers: Mapping[str, Any] | None = None,
        key: SigningKey | str | bytes | None = None,
        issued_at: float | None = None,
        dpop_key: DPoPKey | str | None = None,
        alg: str | None = None,
    ) -> str:
        """Sign a JWT access token (PyJWT) and return it in compact form.

        ``dpop_key`` (a :class:`~resource_guard.dpop.DPoPKey` or its thumbprint) binds the
        token to that key: ``cnf: {"jkt": ...}`` (RFC 9449 §6.1), before ``claims`` apply.

        Claims: ``iss``, ``sub``, ``aud``, ``iat``, ``exp``, ``jti``, plus ``client_id``
        and ``scope`` (space-delimited) when given; ``claims`` adds or overrides, ``omit``
        removes. ``iat`` is ``issued_at``, else the clock. The key is the current one, the
        newest published key for ``algorithm`` (generated and published if needed), or
        ``key`` (a :class:`SigningKey`, or an HMAC secret for ``HS*``);
        ``algorithm="none"`` makes an unsigned token. ``kid`` defaults to the key's own,
        None omits it. ``typ=None`` omits the header ``typ`` (default ``at+jwt``, or the
        :attr:`shape`'s); ``headers`` adds or overrides header fields. With a :attr:`shape`,
        its claims are made before ``claims`` and ``omit`` apply. ``alg=`` is the deprecated
        spelling of ``algorithm=``.
        """
        algorithm = renamed("algorithm", algorithm, "alg", alg)
        if algorithm is not None and not isinstance(algorithm, str):
            raise TypeError(
                f"algorithm must be a str such as 'ES256', or None; got {type(algorithm).__name__}"
            )
        for name, value in (("claims", claims), ("headers", headers)):
            if value is not None and not isinstance(value, Mapping):
                raise TypeError(
                    f"{name} must be a mapping of names to values (a dict), or None; "
                    f"got {type(value).__name__}"
                )
        payload = access_token_claims(
            issuer=self.issuer,
            subject=subject,
            audience=self._audience if audience is None else audience_value("audience", audience),
            now=self.clock() if issued_at is None else issued_at,
            expires_in=expires_in,
            client_id=client_id,
            scopes=scopes,
        )
        shape = self._shape
        if shape is not None:
            shaped_typ = apply_shape(shape, payload)
            typ = shaped_typ if typ is _DEFAULT_TYP else typ
        if dpop_key is not None:
            payload["cnf"] = {"jkt": jkt_of(dpop_key)}
        payload.update(claims or {})
        for name in omit:
            payload.pop(name, None)
        signer = self._signer(algorithm, key)
        algorithm = algorithm or (signer.alg if isinstance(signer, SigningKey) else "none")
        if shape is not None:
            own = signer.kid if isinstance(signer, SigningKey) else None
            chosen = own if kid is CURRENT else kid
            headers = {**shape_headers(shape, chosen), **(headers or {})}
        return sign(payload, algorithm=algorithm, key=signer, kid=kid, typ=typ, headers=headers)

    def _signer(
        self, algorithm: str | None, key: SigningKey | str | bytes | None
    ) -> SigningKey | str | bytes | None:
        """What :meth:`mint` signs with: ``key``, the current key, the newest key for
        ``algorithm``, or None for ``algorithm="none"``."""
        if isinstance(key, SigningKey):
            return key
        if key is not None:
            if not isinstance(key, str | bytes):
                raise TypeError(
                    "key must be a SigningKey, or a str/bytes HMAC secret with "
                    f"algorithm='HS256'; got {type(key).__name__}"
                )
            if algorithm is None or not algorithm.startswith("HS"):
                raise ValueError(
                    "a str/bytes key is an HMAC secret: pass algorithm='HS256' (or HS384/512)"
                )
            return key
        if algorithm == "none":
            return None
        if algorithm is None:
            return self.current_key
        if algorithm in SUPPORTED_ALGORITHMS:
            return self._keys.newest_for(algorithm)
        raise ValueError(
            f"no key for {algorithm!r}: pass key=<secret> for HS* or one of {SUPPORTED_ALGORITHMS}"
        )

    def mint_expired(
        self, subject: str | None = "user-123", *, ago: int = 3600, **options: Any
    ) -> str:
        """A token whose ``exp`` passed ``ago`` seconds ago (default: an hour); ``options``
        as for :meth:`mint`."""
        renamed_in(options, "algorithm", "alg")
        lifetime = options.pop("expires_in", 300)
        issued_at = self.clock() - ago - lifetime
        return self.mint(subject, expires_in=lifetime, issued_at=issued_at, **options)

    def mint_not_yet_valid(
        self, subject: str | None = "user-123", *, ahead: int = 3600, **options: Any
    ) -> str:
        """A token from an issuer ``ahead`` seconds in the future: ``iat`` and ``nbf`` lie
        ahead, ``exp`` after them; ``options`` as for :meth:`mint`."""
        renamed_in(options, "algorithm", "alg")
        issued_at = int(self.clock() + ahead)
        claims = {"nbf": issued_at, **options.pop("claims", {})}
        return self.mint(subject, issued_at=issued_at, claims=claims, **options)

    def auth_headers(self, subject: str | None = "user-123", **options: Any) -> dict[str, str]:
        """``{"Authorization": "Bearer <token>"}`` for a token minted by :meth:`mint`.

        Takes the same arguments as :meth:`mint`:
        ``client.get("/orders", headers=fake.auth_headers(scopes=["orders:read"]))``.
        """
        renamed_in(options, "algorithm", "alg")
        return {"Authorization": f"Bearer {self.mint(subject, **options)}"}

    def dpop_headers(
        self,
        key: DPoPKey,
        method: str,
        url: str,
        subject: str | None = "user-123",
        *,
        nonce: str | None = None,
        token: str | None = None,
        **options: Any,
    ) -> dict[str, str]:
        """``Authorization: DPoP <token>`` and a fresh ``DPoP`` proof by ``key`` for one
        ``method`` request to ``url``: ``token`` if given, else one :meth:`mint` binds to
        ``key`` (``options`` as for :meth:`mint`). ``nonce`` goes into the proof."""
        if token is None:
            token = self.mint(subject, dpop_key=key, **options)
        return dpop_headers(token, key, method, url, nonce=nonce)

    def environ(self) -> dict[str, str]:
        """The ``RESOURCE_GUARD_*`` variables that point ``TokenVerifier.from_env()`` here.

        ``RESOURCE_GUARD_ISSUER``, ``RESOURCE_GUARD_AUDIENCE`` (comma-separated when there
        are several) and ``RESOURCE_GUARD_JWKS_URI``, with the URLs of the moment: serve
        first when another process must reach this issuer.
        """
        audience = self._audience
        audiences = audience if isinstance(audience, str) else ",".join(audience)
        return {
            "RESOURCE_GUARD_ISSUER": self.issuer,
            "RESOURCE_GUARD_AUDIENCE": audiences,
            "RESOURCE_GUARD_JWKS_URI": self.jwks_uri,
        }

    # Clients ------------------------------------------------------------------------------

    def register_client(
        self,
        client_id: str,
        client_secret: str,
        *,
        scopes: str | Iterable[str] = (),
        audience: str | Sequence[str] | None = None,
        expires_in: int = 300,
    ) -> None:
        """Let a confidential client get tokens with the client-credentials grant.

        ``scopes``: what it may ask for (all of them when it asks for none). ``audience``:
        the ``aud`` it gets and the only values its ``audience`` and ``resource`` parameters
        may name (None: the issuer's default, and any requested value is granted). A token
        request naming ``resource`` (RFC 8707, repeatable) gets ``aud`` set to the
        resource(s); a resource that is not an absolute URI without a fragment, or not
        allowed, gets 400 ``invalid_target``. ``expires_in``: token
        lifetime in seconds. Registering an id again replaces the client.
        """
        client = RegisteredClient(
            non_empty_str("client_id", client_id),
            non_empty_str("client_secret", client_secret),
            scope_tuple("scopes", scopes),
            None if audience is None else audience_value("audience", audience),
            seconds("expires_in", expires_in),
        )
        with self._lock:
            self._clients[client_id] = client

    # Faults -------------------------------------------------------------------------------

    def fault(
        self,
        kind: str,
        *,
        endpoint: str = _DEFAULT_ENDPOINT,
        status: int = 503,
        delay: float = 1.0,
        times: int | None = None,
        location: str | None = None,
        path: str | None = None,
    ) -> None:
        """Make one endpoint misbehave (replacing any fault already set there).

        ``endpoint``: one of :data:`ENDPOINTS` (the keys of :attr:`counts`), default
        ``jwks``; ``path=`` is its deprecated spelling. ``kind``: ``status`` (reply
        ``status``), ``slow`` (wait ``delay`` s first), ``drip`` (one body byte every
        ``delay`` s), ``garbage`` (non-JSON), ``not_object`` (a JSON list), ``no_keys``
        (``{}``), ``oversized`` (~1 MiB of valid JSON), ``gzip_bomb`` (~100 KiB gzip
        inflating to ~100 MiB), ``redirect`` (302 to ``location``, default a path serving
        the same document), ``active_string`` (a JSON introspection answer whose
        ``active`` is the string ``"true"``). ``times``: how many requests it hits (None: until
        :meth:`clear_faults`).
        """
        given = None if endpoint is _DEFAULT_ENDPOINT else endpoint
        chosen = renamed("endpoint", given, "path", path)  # None: neither was passed
        endpoint = endpoint if chosen is None else chosen
        one_of("endpoint", endpoint, ENDPOINTS, unknown="unknown endpoint")
        new = Fault(kind, status=status, delay=delay, times=times, location=location)
        with self._lock:
            self._faults[endpoint] = new

    def clear_faults(self) -> None:
        """Remove every injected fault."""
        with self._lock:
            self._faults.clear()

    # Serving ------------------------------------------------------------------------------

    def transport(self) -> FakeIssuerTransport:
        """An httpx transport (sync and async) serving this issuer in-process."""
        return FakeIssuerTransport(self._respond, self._current_origin)

    def client(self, **options: Any) -> httpx.Client:
        """An :class:`httpx.Client` on :meth:`transport` (``options`` go to httpx)."""
        return httpx.Client(transport=self.transport(), **options)

    def async_client(self, **options: Any) -> httpx.AsyncClient:
        """An :class:`httpx.AsyncClient` on :meth:`transport` (``options`` go to httpx)."""
        return httpx.AsyncClient(transport=self.transport(), **options)

    def serve(self, *, port: int = 0) -> ServeContext[FakeIssuer]:
        """Serve over HTTP on 127.0.0.1 (``port`` 0: any free one) for a ``with`` block.

        Works with ``with`` and ``async with``; yields this issuer, whose URLs and ``iss``
        point at the server meanwhile. On exit the server stops and its threads are joined.
        """
        integer("port", port, 0, 65535)
        return ServeContext(lambda: self._start_server(port), self._stop_server)

    def _start_server(self, port: int) -> FakeIssuer:
        with self._lock:
            if self._server is not None:
                raise RuntimeError("this FakeIssuer is already being served")
            self._server = LoopbackServer(self._respond, port=port)
        return self

    def _stop_server(self) -> None:
        with self._lock:
            server, self._server = self._server, None
        if server is not None:
            server.close()

    # Endpoints ----------------------------------------------------------------------------

    def _routes(self) -> dict[str, str]:
        prefix = self._prefix
        return {
            prefix + _OIDC_PATH: "discovery",
            _OAUTH_PATH + prefix: "oauth_metadata",
            prefix + "/jwks.json": "jwks",
            prefix + "/token": "token",
            prefix + "/introspect": "introspection",
            prefix + "/revoke": "revocation",
        }

    def _respond(self, request: HTTPRequest) -> HTTPReply:
        """Answer one request: count it, apply its endpoint's fault, else reply normally.

        CORS (testing only): a preflight (``OPTIONS``) is answered at once, neither counted
        nor faulted, and every other reply of an endpoint lets the page's origin read it.
        """
        path = request.path
        moved = path.startswith(_MOVED + "/")
        if moved:
            path = path[len(_MOVED) :]
        endpoint = self._routes().get(path)
        if endpoint is None:
            return json_reply(404, {"error": "not_found"})
        if request.method == "OPTIONS":
            return cors_preflight(request, "POST" if endpoint == "token" else "GET")
        with self._lock:
            self.counts[endpoint] += 1
            fault = None if moved else self._faults.get(endpoint)
            if fault is not None and fault.take():
                del self._faults[endpoint]
        if fault is None:
            reply = self._endpoint_reply(endpoint, request)
        else:
            reply = fault.apply(
                lambda: self._endpoint_reply(endpoint, request),
                self._current_origin() + _MOVED + path,
            )
        return with_cors(reply, request)

    def _endpoint_reply(self, endpoint: str, request: HTTPRequest) -> HTTPReply:
        if endpoint in INTROSPECTION_ENDPOINTS:
            return self._opaque_reply(endpoint, request)
        if endpoint == "token":
            try:
                grant = authorize(request, self._clients_snapshot())
                binding = self._dpop.bind(request, self.token_endpoint)
            except OAuthError as exc:
                return self._dpop.error_reply(exc)
            token = (self._issue_granted if self.opaque_tokens else self.mint)(
                grant.client.client_id,
                client_id=grant.client.client_id,
                scopes=grant.scopes,
                audience=grant.audience,
                expires_in=grant.client.expires_in,
                dpop_key=None if binding is None else binding.jkt,
            )
            if binding is None:
                return token_reply(token, grant)
            return with_nonce(token_reply(token, grant, token_type="DPoP"), binding.nonce)
        if request.method != "GET":
            return json_reply(405, {"error": "method_not_allowed"}, ("allow", "GET"))
        if endpoint == "jwks":
            max_age = self.jwks_max_age
            headers = () if max_age is None else (("cache-control", f"public, max-age={max_age}"),)
            return json_reply(200, self.jwks(), *headers)
        return json_reply(200, self.metadata(oidc=endpoint == "discovery"))

    def _clients_snapshot(self) -> dict[str, RegisteredClient]:
        with self._lock:
            return dict(self._clients)
