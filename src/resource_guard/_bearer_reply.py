"""RFC 6750 on the reply side: ``WWW-Authenticate`` challenges and the JSON refusals.

Values that reach a reply header are filtered to the characters RFC 6750 allows in them,
so no input (a realm, a description, a scope) can add a header or break the challenge.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["BearerReplies", "Reply", "challenge"]

# RFC 6750 §3: error_description allows %x20-21 / %x23-5B / %x5D-7E; everything else goes.
_NOT_DESCRIPTION = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")
_NOT_SCOPE = re.compile(r"[^\x21\x23-\x5b\x5d-\x7e]")
_NOT_PRINTABLE = re.compile(r"[^\x20-\x7e]")
_MAX_DESCRIPTION = 200
_MAX_RETRY_AFTER = 3600


def _quoted(value: str) -> str:
    """An RFC 9110 quoted-string of printable ASCII (quote and backslash escaped)."""
    value = _NOT_PRINTABLE.sub("", value)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _description(value: str) -> str:
    return _NOT_DESCRIPTION.sub("", value)[:_MAX_DESCRIPTION].strip()


def challenge(
    realm: str,
    *,
    error: str | None = None,
    description: str | None = None,
    scopes: Iterable[str] = (),
    resource_metadata: str | None = None,
    scheme: str = "Bearer",
    algs: Iterable[str] = (),
) -> bytes:
    """A ``WWW-Authenticate`` value: ``Bearer realm="..."`` plus the error parameters and
    the URL of the protected-resource metadata (RFC 9728 §5.1), when there is one.
    ``scheme="DPoP"`` makes a DPoP challenge (RFC 9449 §7.1), ``algs`` naming the proof
    algorithms accepted.

    The realm and the URL are escaped as quoted-strings; the description, scopes and
    algorithms keep only the characters RFC 6750 allows in them, so no input can break
    out of the quotes.
    """
    parts = [f"{scheme} realm={_quoted(realm)}"]
    names = [a for a in (_NOT_SCOPE.sub("", alg) for alg in algs) if a]
    if names:
        parts.append(f'algs="{" ".join(names)}"')
    if error is not None:
        parts.append(f'error="{_description(error)}"')
    if description:
        parts.append(f'error_description="{_description(description)}"')
    cleaned = [s for s in (_NOT_SCOPE.sub("", scope) for scope in scopes) if s]
    if cleaned:
        parts.append(f'scope="{" ".join(cleaned)}"')
    if resource_metadata:
        parts.append(f"resource_metadata={_quoted(resource_metadata)}")
    return ", ".join(parts).encode("ascii")


@dataclass(frozen=True, slots=True)
class Reply:
    """A complete HTTP reply: status, header pairs (bytes) and a JSON body holding
    ``error`` and ``description``."""

    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    error: str
    description: str

    def header(self, name: bytes) -> bytes | None:
        """The first value of header ``name`` (lower case), or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None


def _reply(
    status: int,
    error: str,
    description: str,
    extra: tuple[tuple[bytes, bytes], ...] = (),
) -> Reply:
    body = json.dumps(
        {"error": error, "error_description": description}, separators=(",", ":")
    ).encode("ascii")
    headers = (
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode("ascii")),
        (b"cache-control", b"no-store"),
        *extra,
    )
    return Reply(status, headers, body, error, description)


class BearerReplies:
    """The refusals of one realm, precomputed where they do not depend on the request.

    | situation                      | status | challenge                            |
    |--------------------------------|--------|--------------------------------------|
    | no credentials                 | 401    | ``Bearer realm="..."``               |
    | malformed request              | 400    | ``error="invalid_request"`` (on the  |
    |                                |        | ``DPoP`` one for the DPoP scheme)    |
    | token refused                  | 401    | ``error="invalid_token"``            |
    | scope missing                  | 403    | ``error="insufficient_scope"`` (on   |
    |                                |        | the ``DPoP`` one for a DPoP request) |
    | keys unavailable               | 503    | none; ``Retry-After`` instead        |
    | DPoP proof or binding refused  | 401    | ``DPoP ..., error="..."``            |

    With ``resource_metadata`` (a URL), every challenge also carries
    ``resource_metadata="<URL>"`` (RFC 9728 §5.1). With ``dpop_algs`` (DPoP accepted), a
    request without credentials gets a bare ``DPoP realm="...", algs="..."`` challenge as
    well, in a second ``WWW-Authenticate`` header; ``bearer=False`` (DPoP required) leaves
    the ``Bearer`` one out. :meth:`for_dpop` gives the replies of a request that used the
    ``DPoP`` scheme, whose route refusals (403) carry the error on the ``DPoP`` challenge.
    """

    __slots__ = (
        "_dpop",
        "_dpop_request",
        "_invalid_request",
        "_invalid_token",
        "_scope",
        "_views",
        "bearer",
        "dpop_algs",
        "missing",
        "realm",
        "resource_metadata",
        "unavailable",
    )

    _CACHE_LIMIT = 256
    _VIEWS_LIMIT = 16

    def __init__(
        self,
        realm: str,
        *,
        resource_metadata: str | None = None,
        dpop_algs: Iterable[str] = (),
        bearer: bool = True,
        dpop_request: tuple[tuple[str, ...], bool] | None = None,
    ) -> None:
        self.realm = realm
        # (algs, bearer) of the policy a DPoP-scheme request was checked by (see for_dpop).
        self._dpop_request = dpop_request
        self._views: dict[tuple[frozenset[str], bool], BearerReplies] = {}
        self.resource_metadata = resource_metadata
        """The metadata URL every challenge names, or None."""
        self.dpop_algs: tuple[str, ...] = tuple(sorted(dpop_algs))
        """The DPoP proof algorithms a bare challenge names; empty: DPoP not accepted."""
        self.bearer = bearer or not self.dpop_algs
        """Whether the bare challenges include ``Bearer`` (always when DPoP is off)."""
        self.missing = _reply(
            401,
            "unauthorized",
            "a bearer token is required" if self.bearer else "a DPoP-bound token is required",
            self._challenges(self.dpop_algs, self.bearer),
        )
        """401 for a request without credentials: bare challenges (RFC 6750 §3.1)."""
        self.unavailable = _reply(
            503, "temporarily_unavailable", "token verification is temporarily unavailable"
        )
        """503 without ``Retry-After``, for failures of unknown cause."""
        self._invalid_request: dict[str, Reply] = {}
        self._invalid_token: dict[str, Reply] = {}
        self._scope: dict[tuple[tuple[str, ...], bool], Reply] = {}
        self._dpop: dict[tuple[object, ...], Reply] = {}

    def _challenge(
        self,
        *,
        error: str | None = None,
        description: str | None = None,
        scopes: Iterable[str] = (),
    ) -> bytes:
        return challenge(
            self.realm,
            error=error,
            description=description,
            scopes=scopes,
            resource_metadata=self.resource_metadata,
        )

    def _challenges(
        self,
        algs: tuple[str, ...],
        bearer: bool,
        error: str | None = None,
        description: str | None = None,
        scopes: Iterable[str] = (),
    ) -> tuple[tuple[bytes, bytes], ...]:
        """``WWW-Authenticate`` headers: a bare ``Bearer`` one when ``bearer``, and a
        ``DPoP`` one (holding the error and ``scopes``) when ``algs``."""
        headers = []
        if bearer:
            headers.append((b"www-authenticate", self._challenge()))
        if algs:
            dpop = challenge(
                self.realm,
                error=error,
                description=description,
                scopes=scopes,
                resource_metadata=self.resource_metadata,
                scheme="DPoP",
                algs=algs,
            )
            headers.append((b"www-authenticate", dpop))
        return tuple(headers)

    def dpop_error(
        self,
        error: str,
        description: str,
        *,
        algs: Iterable[str],
        bearer: bool,
        nonce: str | None = None,
    ) -> Reply:
        """401 for a DPoP refusal (RFC 9449 §7.1): ``error`` (``invalid_dpop_proof``,
        ``invalid_token``, ``use_dpop_nonce``) on a ``DPoP`` challenge naming ``algs``,
        a bare ``Bearer`` one too when ``bearer``, and ``DPoP-Nonce`` when ``nonce``."""
        return self._dpop_reply(401, error, description, tuple(sorted(algs)), bearer, nonce)

    def _dpop_reply(
        self,
        status: int,
        error: str,
        description: str,
        names: tuple[str, ...],
        bearer: bool,
        nonce: str | None = None,
    ) -> Reply:
        key = (status, error, description, names, bearer, nonce)
        reply = self._dpop.get(key)
        if reply is None:
            text = _description(description) or error
            extra = self._challenges(names, bearer, error, text)
            if nonce is not None:
                extra = (*extra, (b"dpop-nonce", _NOT_SCOPE.sub("", nonce).encode("ascii")))
            reply = _reply(status, error, text, extra)
            if len(self._dpop) >= self._CACHE_LIMIT:
                self._dpop.clear()
            self._dpop[key] = reply
        return reply

    def for_dpop(self, algs: frozenset[str], bearer: bool) -> BearerReplies:
        """These replies for a request that came with the ``DPoP`` scheme, checked by a
        policy accepting proofs signed with ``algs`` (and bearer tokens when ``bearer``):
        a route's 403 ``insufficient_scope`` then holds its error on a ``DPoP`` challenge
        (RFC 9449 §7.1), after a bare ``Bearer`` one when ``bearer``. Remembered per
        ``(algs, bearer)``."""
        key = (algs, bearer)
        view = self._views.get(key)
        if view is None:
            view = BearerReplies(
                self.realm,
                resource_metadata=self.resource_metadata,
                dpop_algs=self.dpop_algs,
                bearer=self.bearer,
                dpop_request=(tuple(sorted(algs)), bearer),
            )
            if len(self._views) >= self._VIEWS_LIMIT:
                self._views.clear()
            self._views[key] = view
        return view

    def invalid_request(self, description: str, *, dpop: bool = False) -> Reply:
        """400 ``invalid_request``: on the ``Bearer`` challenge, or on the ``DPoP`` one
        (RFC 9449 §7.1) when DPoP is accepted and the request used that scheme (``dpop``)
        or bearer tokens are not accepted."""
        if self.dpop_algs and (dpop or not self.bearer):
            return self._dpop_reply(
                400, "invalid_request", description, self.dpop_algs, self.bearer
            )
        return self._cached(self._invalid_request, description, 400, "invalid_request")

    def invalid_token(self, description: str) -> Reply:
        """401 ``invalid_token`` with a short, client-safe description."""
        return self._cached(self._invalid_token, description, 401, "invalid_token")

    def _cached(self, cache: dict[str, Reply], description: str, status: int, error: str) -> Reply:
        reply = cache.get(description)
        if reply is None:
            text = _description(description) or error
            header = self._challenge(error=error, description=text)
            reply = _reply(status, error, text, ((b"www-authenticate", header),))
            if len(cache) >= self._CACHE_LIMIT:
                cache.clear()
            cache[description] = reply
        return reply

    def insufficient_scope(self, required: Iterable[str], *, any_of: bool = False) -> Reply:
        """403 ``insufficient_scope`` naming every scope the route asks for."""
        key = (tuple(required), any_of)
        reply = self._scope.get(key)
        if reply is None:
            text = (
                "the token grants none of the accepted scopes"
                if any_of
                else "the token lacks a required scope"
            )
            if self._dpop_request is None:
                header = self._challenge(
                    error="insufficient_scope", description=text, scopes=key[0]
                )
                extra: tuple[tuple[bytes, bytes], ...] = ((b"www-authenticate", header),)
            else:  # a DPoP request: the error goes on the DPoP challenge (RFC 9449 §7.1)
                algs, bearer = self._dpop_request
                extra = self._challenges(algs, bearer, "insufficient_scope", text, key[0])
            reply = _reply(403, "insufficient_scope", text, extra)
            if len(self._scope) >= self._CACHE_LIMIT:
                self._scope.clear()
            self._scope[key] = reply
        return reply

    def keys_unavailable(self, retry_after: float) -> Reply:
        """503 with ``Retry-After`` in whole seconds (1 s to 1 h)."""
        seconds = retry_after if math.isfinite(retry_after) else _MAX_RETRY_AFTER
        seconds = min(max(1, math.ceil(seconds)), _MAX_RETRY_AFTER)
        base = self.unavailable
        headers = (*base.headers, (b"retry-after", str(seconds).encode()))
        return Reply(503, headers, base.body, base.error, base.description)
