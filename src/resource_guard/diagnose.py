"""Diagnosis of a resource server's set-up against its issuer (``resource-guard check``).

Pure report building over the library's own pieces: the one discovery (:mod:`._discovery`),
the one HTTP exchange (:mod:`._fetch`), :func:`~._keyset.load_key` for each JWK (its
reason when unusable), :class:`~._keyset.KeySet` for key selection and
:class:`~._verifier.TokenVerifier` for the token's verdict. The result is a list of
:class:`Finding` (ok / warn / fail, the check, expected, actual, a hint). Nothing here
prints; no finding holds a token, its signature or key material. Public (the command
line uses public modules only): ``await diagnose({"issuer": ..., "audience": ...}, token)``.
"""

from __future__ import annotations

import contextlib
import inspect
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final
from urllib.parse import urlsplit

import httpx

from ._algorithms import ALGORITHMS
from ._claims import ClaimRules
from ._discovery import DiscoveryError, discover
from ._fetch import (
    MAX_DOCUMENT_BYTES,
    FetchError,
    Reply,
    bare_request,
    fetch_json,
    is_loopback_host,
    json_object,
    send_async,
)
from ._jws import read_unverified
from ._keyset import MAX_JWKS_KEYS, KeySet, UnusableKeyError, VerificationKey, load_key
from ._verifier import TokenVerifier
from .exceptions import (
    AlgorithmNotAllowedError,
    InvalidSignatureError,
    InvalidTokenError,
    InvalidTokenTypeError,
    KeysUnavailableError,
    MalformedTokenError,
    UnknownKeyError,
)

__all__ = [
    "FAIL",
    "IDP",
    "OK",
    "TOKEN",
    "WARN",
    "Diagnosis",
    "Finding",
    "diagnose",
    "issuer_hint",
    "options_from_env",
]

OK: Final = "ok"
WARN: Final = "warn"
FAIL: Final = "fail"
IDP: Final = "idp"
"""Findings about the configuration and the issuer (discovery, JWKS, clock)."""
TOKEN: Final = "token"
"""Findings about the token given to check."""

_DEFAULTS: Final[Mapping[str, Any]] = {
    name: parameter.default
    for name, parameter in inspect.signature(TokenVerifier).parameters.items()
    if parameter.default is not inspect.Parameter.empty
}
"""TokenVerifier's own defaults (leeway, timeout...), not a copy of them."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One check: ``status`` ok/warn/fail, what was expected, what was found, a hint."""

    status: str
    check: str
    expected: str
    actual: str
    hint: str = ""
    area: str = IDP

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(slots=True)
class Diagnosis:
    """Every finding, in the order checked."""

    findings: list[Finding] = field(default_factory=list)

    def failed(self, area: str) -> bool:
        """True when a finding of ``area`` (``idp`` or ``token``) failed."""
        return any(f.status == FAIL and f.area == area for f in self.findings)

    def count(self, status: str) -> int:
        return sum(f.status == status for f in self.findings)


class _Capture(TokenVerifier):
    """A TokenVerifier that remembers the keyword arguments it was built with."""

    def __init__(self, issuer: str, audience: str | Sequence[str], **options: Any) -> None:
        super().__init__(issuer, audience, **options)
        self.options: dict[str, Any] = {"issuer": issuer, "audience": audience, **options}


def options_from_env(environ: Mapping[str, str] | None = None, **overrides: Any) -> dict[str, Any]:
    """The TokenVerifier keywords :meth:`TokenVerifier.from_env` reads from
    ``RESOURCE_GUARD_*`` (its own parsing and checks; ``overrides`` win). Raises
    TypeError/ValueError like it."""
    return _Capture.from_env(environ, **overrides).options


def issuer_hint(configured: str, named: object) -> str:
    """Why a discovered issuer differs from the configured one, and what to set."""
    if not isinstance(named, str):
        return "the discovery document's 'issuer' is not a string: the IdP is misconfigured"
    exact = f"iss is compared as an exact string: configure {named!r} (what tokens carry)"
    given, found = urlsplit(configured), urlsplit(named)
    if configured.rstrip("/") == named.rstrip("/"):
        return f"trailing slash: {exact}"
    if (given.scheme, given.netloc) != (found.scheme, found.netloc) and given.path.rstrip(
        "/"
    ) == found.path.rstrip("/"):
        if given.scheme != found.scheme:
            return f"http vs https: {exact}"
        if (
            given.hostname != found.hostname
            and is_loopback_host(given.hostname)
            and is_loopback_host(found.hostname)
        ):
            return f"localhost and 127.0.0.1 are different issuers: {exact}"
        return f"another host or port: {exact}"
    return exact


def _when(timestamp: float, now: float) -> str:
    try:
        moment = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return f"{timestamp!r} (not a representable time)"
    delta = round(timestamp - now)
    relative = "now" if delta == 0 else f"in {delta} s" if delta > 0 else f"{-delta} s ago"
    return f"{moment} ({relative})"


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _key_name(jwk: object, index: int) -> str:
    kid = jwk.get("kid") if isinstance(jwk, Mapping) else None
    return f"kid={kid!r:.64}" if kid is not None else f"#{index + 1} (no kid)"


def _describe_key(key: VerificationKey) -> str:
    shape = f"{key.kty} {key.crv}" if key.crv else key.kty
    return f"{shape}, alg {key.alg or '(any that fits)'}"


def _refused(exc: InvalidTokenError) -> Finding:
    actual = f"refused ({exc.code}): {exc.message}"
    return Finding(FAIL, "verdict", "accepted by TokenVerifier", actual, area=TOKEN)


class _Run:
    """One diagnosis: the shared client, the clock, and what was found so far."""

    def __init__(
        self,
        options: Mapping[str, Any],
        verifier: TokenVerifier,
        client: httpx.AsyncClient,
        clock: Callable[[], float],
    ) -> None:
        self.options = {**_DEFAULTS, **options}
        self.verifier = verifier
        self.issuer = self.verifier.issuer
        self.client = client
        self.clock = clock
        self.timeout: float = self.options["timeout"]
        self.leeway: float = self.options["leeway"]
        self.insecure: bool = self.options["allow_insecure_http"]
        self.dates: list[tuple[str, str | None, float]] = []
        self.result = Diagnosis()

    def add(self, status: str, check: str, expected: str, actual: str, hint: str = "") -> None:
        self.result.findings.append(Finding(status, check, expected, actual, hint, IDP))

    def token(self, status: str, check: str, expected: str, actual: str, hint: str = "") -> None:
        self.result.findings.append(Finding(status, check, expected, actual, hint, TOKEN))

    # -- the issuer -----------------------------------------------------------------------

    async def _get(self, url: str) -> Reply:
        request = bare_request("GET", url, timeout=self.timeout)
        reply = await send_async(
            self.client, request, timeout=self.timeout, max_bytes=MAX_DOCUMENT_BYTES
        )
        self.dates.append((url, reply.headers.get("Date"), self.clock()))
        return reply

    async def discovery(self) -> str | None:
        """The JWKS URL (configured or discovered); None when there is none to use."""
        configured = self.options["jwks_uri"]
        if configured is not None:
            self.add(OK, "discovery", "skipped: jwks_uri is configured", configured)
            return str(configured)
        replies: list[Reply] = []

        async def get(url: str) -> Reply:
            reply = await self._get(url)
            replies.append(reply)
            return reply

        try:
            metadata = await discover(self.issuer, get)
        except DiscoveryError as exc:
            self._discovery_failed(exc, replies)
            return None
        expected = "a metadata document naming the configured issuer"
        self.add(OK, "discovery", expected, metadata.url)
        self.add(OK, "issuer", self.issuer, str(metadata.document.get("issuer")))
        try:
            jwks_uri = metadata.endpoint("jwks_uri", allow_insecure_http=self.insecure)
        except DiscoveryError as exc:
            self.add(FAIL, "jwks_uri", "an https (or loopback) URL", "; ".join(exc.reasons))
            return None
        self.add(OK, "jwks_uri", "an https (or loopback) URL", jwks_uri)
        return jwks_uri

    def _discovery_failed(self, exc: DiscoveryError, replies: list[Reply]) -> None:
        documents = [json_object(r.body) for r in replies if r.status_code == 200]
        named = [d["issuer"] for d in documents if d is not None and "issuer" in d]
        if named and named[-1] != self.issuer:
            reached = self.dates[-1][0] if self.dates else "reached"
            self.add(OK, "discovery", "a metadata document", reached)
            hint = issuer_hint(self.issuer, named[-1])
            self.add(FAIL, "issuer", f"{self.issuer!r}", f"{named[-1]!r:.200}", hint)
            return
        self.add(
            FAIL,
            "discovery",
            "a metadata document naming the configured issuer (OIDC, then RFC 8414)",
            "; ".join(exc.reasons),
            "is the issuer URL right and the IdP reachable from here? "
            "Without discovery, configure jwks_uri (--jwks-uri)",
        )

    async def jwks(self, uri: str) -> list[VerificationKey] | None:
        """The usable keys (each JWK judged by load_key, reasons listed); None on failure."""
        try:
            document = await fetch_json(self.client, uri, timeout=self.timeout)
        except FetchError as exc:
            self.add(FAIL, "jwks", "HTTP 200 with a JSON object", str(exc), f"GET {uri}")
            return None
        self.dates.append((uri, document.date, self.clock()))
        entries = document.body.get("keys")
        if not isinstance(entries, list):
            self.add(FAIL, "jwks", "a JSON object with a 'keys' list", "no 'keys' list")
            return None
        usable: list[VerificationKey] = []
        for index, jwk in enumerate(entries[:MAX_JWKS_KEYS]):
            name = f"key {_key_name(jwk, index)}"
            try:
                key = load_key(jwk)
            except UnusableKeyError as exc:
                self.add(WARN, name, "a usable public signing key", f"skipped: {exc}")
                continue
            usable.append(key)
            self.add(OK, name, "a usable public signing key", _describe_key(key))
        if len(entries) > MAX_JWKS_KEYS:
            ignored = len(entries) - MAX_JWKS_KEYS
            self.add(WARN, "jwks", f"at most {MAX_JWKS_KEYS} keys", f"{ignored} more ignored")
        summary = f"{len(usable)} usable of {len(entries)}"
        if not usable:
            self.add(FAIL, "jwks", "at least one usable signing key", summary)
            return None
        self.add(OK, "jwks", "at least one usable signing key", summary)
        return usable

    def algorithms(self, keys: list[VerificationKey]) -> None:
        allowed = sorted(self.verifier.algorithms)
        offered = sorted({alg for key in keys for alg in ALGORITHMS if key.fits(alg)})
        expected = "allowed: " + ", ".join(allowed)
        actual = "the keys verify: " + ", ".join(offered)
        if not set(offered) & set(allowed):
            hint = "no published key can verify an allowed algorithm: widen the allow-list"
            self.add(FAIL, "algorithms", expected, actual, hint)
            return
        idle = [key for key in keys if not any(key.fits(alg) for alg in allowed)]
        if idle:
            kids = ", ".join(f"{key.kid!r:.66}" for key in idle)
            hint = f"keys no allowed algorithm fits (tokens they sign are refused): {kids}"
            self.add(WARN, "algorithms", expected, actual, hint)
            return
        self.add(OK, "algorithms", expected, actual)

    def clock_skew(self) -> None:
        if not self.dates:
            return
        expected = f"within {self.leeway:g} s (the leeway) of the IdP's Date header"
        measured = []
        for url, date, local in self.dates:
            with contextlib.suppress(TypeError, ValueError, IndexError, OverflowError):
                if date is not None:
                    measured.append((url, local - parsedate_to_datetime(date).timestamp()))
        if not measured:
            self.add(WARN, "clock skew", expected, "the IdP sent no Date header: not measured")
            return
        url, skew = measured[-1]
        side = "ahead of" if skew >= 0 else "behind"
        actual = f"this clock is about {abs(skew):.0f} s {side} the IdP's ({url})"
        if abs(skew) > self.leeway + 1:  # Date has a resolution of one second
            hint = "exp, nbf and iat are judged with this clock: synchronise it (NTP)"
            self.add(WARN, "clock skew", expected, actual, hint)
        else:
            self.add(OK, "clock skew", expected, actual)

    # -- the token ------------------------------------------------------------------------

    async def check_token(
        self, raw: str, jwks_uri: str | None, keys: list[VerificationKey] | None
    ) -> None:
        try:
            header, claims = read_unverified(raw)
        except MalformedTokenError as exc:
            self.token(FAIL, "format", "a JWT: three base64url parts", exc.message)
            return
        alg = header.get("alg")
        allowed = sorted(self.verifier.algorithms)
        status = OK if alg in allowed else FAIL
        self.token(status, "alg", "one of " + ", ".join(allowed), f"{alg!r:.40}")
        self._kid(header.get("kid"), alg, keys)
        self._typ(header.get("typ"))
        verdict = await self._signature(raw, jwks_uri, keys)
        now = self.clock()
        self._times(claims, now)
        self._issuer(claims.get("iss"))
        self._audience(claims.get("aud"))
        if verdict is not None:
            self.result.findings.append(verdict)

    def _kid(self, kid: object, alg: object, keys: list[VerificationKey] | None) -> None:
        actual = f"{kid!r:.66}" if kid is not None else "(none)"
        if keys is None:
            self.token(WARN, "kid", "a published key", actual, "not checked: no usable keys")
            return
        published = ", ".join(dict.fromkeys(f"{k.kid!r:.66}" for k in keys))
        expected = f"a published key that fits the alg ({published})"
        if not isinstance(alg, str) or (kid is not None and not isinstance(kid, str)):
            self.token(FAIL, "kid", expected, actual, "the header's alg or kid is not a string")
            return
        try:
            KeySet(keys).select(kid, alg)
        except UnknownKeyError as exc:
            hint = "a key the IdP no longer (or never) published, or another issuer's token"
            self.token(FAIL, "kid", expected, f"{actual}: {exc.message}", hint)
            return
        self.token(OK, "kid", expected, actual)

    def _typ(self, typ: object) -> None:
        strict = bool(self.options["strict"])
        expected = "at+jwt" if strict else "at+jwt, application/at+jwt, JWT or absent"
        rules = ClaimRules(
            self.issuer, frozenset(self.verifier.audiences), self.leeway, strict=strict
        )
        actual = f"{typ!r:.40}" if typ is not None else "(absent)"
        try:
            if typ is not None and not isinstance(typ, str):
                raise InvalidTokenTypeError("the header 'typ' is not a string")
            rules.check_type(typ)
        except InvalidTokenTypeError:
            self.token(FAIL, "typ", expected, actual, "not an access token (an ID token?)")
            return
        self.token(OK, "typ", expected, actual)

    async def _signature(
        self, raw: str, jwks_uri: str | None, keys: list[VerificationKey] | None
    ) -> Finding | None:
        """The signature's finding, checked by TokenVerifier; returns its verdict."""
        expected = "verifies with the published key"
        if jwks_uri is None or keys is None:
            self.token(WARN, "signature", expected, "not checked: no usable keys")
            return None
        options = {
            **self.options,
            "jwks_uri": jwks_uri,
            "cache_size": 0,
            "http_client": self.client,
        }
        try:
            async with TokenVerifier(**options) as verifier:
                await verifier.verify(raw)
        except InvalidSignatureError as exc:
            hint = "signed by another key with the same kid, or altered"
            self.token(FAIL, "signature", expected, "does not verify", hint)
            return _refused(exc)
        except (AlgorithmNotAllowedError, UnknownKeyError, MalformedTokenError) as exc:
            self.token(WARN, "signature", expected, f"not checked: {exc.message}")
            return _refused(exc)
        except InvalidTokenError as exc:
            self.token(OK, "signature", expected, "verifies")
            return _refused(exc)
        except KeysUnavailableError as exc:
            self.token(WARN, "signature", expected, "not checked: keys unavailable")
            return Finding(FAIL, "verdict", "keys to decide with", exc.message, area=IDP)
        self.token(OK, "signature", expected, "verifies")
        return Finding(OK, "verdict", "accepted by TokenVerifier", "accepted", area=TOKEN)

    def _times(self, claims: Mapping[str, Any], now: float) -> None:
        leeway = f"{self.leeway:g} s leeway"
        exp = _number(claims.get("exp"))
        if exp is None:
            self.token(FAIL, "exp", "a NumericDate (exp is required)", "(missing)")
        else:
            status = FAIL if now > exp + self.leeway else OK
            hint = "the token expired: get a new one" if status == FAIL else ""
            expected = f"later than now - {leeway}: {_when(now - self.leeway, now)}"
            self.token(status, "exp", expected, _when(exp, now), hint)
        for name in ("nbf", "iat"):
            value = _number(claims.get(name))
            if name not in claims:
                continue
            expected = f"absent, or before now + {leeway}: {_when(now + self.leeway, now)}"
            if value is None:
                self.token(FAIL, name, expected, "not a number")
                continue
            status = FAIL if now + self.leeway < value else OK
            hint = "in the future: is a clock off?" if status == FAIL else ""
            self.token(status, name, expected, _when(value, now), hint)

    def _issuer(self, iss: object) -> None:
        actual = f"{iss!r:.200}" if iss is not None else "(missing)"
        if iss == self.issuer:
            self.token(OK, "iss", self.issuer, str(iss))
            return
        hint = issuer_hint(self.issuer, iss) if iss is not None else "the token names no issuer"
        self.token(FAIL, "iss", self.issuer, actual, hint)

    def _audience(self, aud: object) -> None:
        expected = "one of " + ", ".join(self.verifier.audiences)
        values = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else None
        if values is None:
            self.token(FAIL, "aud", expected, f"{aud!r:.200}" if aud is not None else "(missing)")
            return
        actual = ", ".join(f"{value!s:.100}" for value in values) or "(empty)"
        if set(self.verifier.audiences) & {v for v in values if isinstance(v, str)}:
            self.token(OK, "aud", expected, actual)
            return
        hint = "the token was issued for another API: ask the IdP for this audience"
        self.token(FAIL, "aud", expected, actual, hint)


async def diagnose(
    options: Mapping[str, Any],
    token: str | None = None,
    *,
    http_client: httpx.AsyncClient | None = None,
    clock: Callable[[], float] = time.time,
) -> Diagnosis:
    """Check ``options`` (TokenVerifier keywords) against the live issuer, and ``token``.

    Raises TypeError/ValueError for options TokenVerifier refuses (before any request).
    """
    verifier = TokenVerifier(**options)  # the options' own checks, before any request
    own = None
    if http_client is None:
        # Like the key source's own client: no redirects, no proxy or .netrc from the
        # environment, no idle connection left behind.
        own = http_client = httpx.AsyncClient(
            follow_redirects=False,
            trust_env=False,
            limits=httpx.Limits(max_keepalive_connections=0),
        )
    run = _Run(options, verifier, http_client, clock)
    try:
        jwks_uri = await run.discovery()
        keys = await run.jwks(jwks_uri) if jwks_uri is not None else None
        if keys is not None:
            run.algorithms(keys)
        run.clock_skew()
        if token is not None:
            await run.check_token(token, jwks_uri, keys)
    finally:
        if own is not None:
            await own.aclose()
    return run.result
