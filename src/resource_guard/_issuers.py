"""TrustedIssuers: bearer tokens of several issuers, each judged by its own TokenVerifier.

The issuer is picked by exact match of the token's unverified ``iss``; only the verifier of
that issuer then looks at keys, so a token naming an issuer nobody trusts is refused without
any network request, and each issuer keeps its own verified-token cache, fetch cooldown
and unknown-``kid`` bound. The signature, checked by the chosen verifier, proves the ``iss``.

:class:`IssuerTemplate` covers identity providers with one issuer per tenant and one JWKS
for all of them (Microsoft Entra ID): ``https://login.microsoftonline.com/{tenant}/v2.0``
with an allowlist of tenant ids, a callable deciding, or (dangerous) any tenant.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Literal
from urllib.parse import urlsplit

from . import _options as opt
from ._decisions import clean
from ._jwks import RemoteKeySource
from ._jws import Header, TokenParser, decode_payload
from ._models import AccessToken
from ._protocol import Lifecycle
from ._verifier import DEFAULT_MAX_TOKEN_BYTES, TokenVerifier
from .dpop import DPoPPolicy
from .exceptions import InvalidTokenError, UnknownIssuerError

__all__ = ["TENANT", "IssuerTemplate", "TenantPolicy", "TrustedIssuers"]

logger = logging.getLogger("resource_guard.issuers")

TENANT = "{tenant}"
"""The placeholder an :class:`IssuerTemplate` replaces with a tenant id."""
_TENANT_ID = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_-]|\.(?!\.)){0,127}")
"""A tenant id: letters, digits, ``-``, ``_`` and single dots, 1-128 characters, starting
with a letter or digit (a GUID, a domain name): never ``/``, ``?``, ``#`` or ``..``."""
MAX_ALLOWED_TENANTS = 10_000
DEFAULT_MAX_TENANTS = 100
DEFAULT_ROUTES = 16_384

DEFAULT_TENANT_CLAIM = "tid"
"""Entra ID's tenant claim: its tokens name their tenant both in ``iss`` and in ``tid``."""

TenantPolicy = Literal["allowlist", "callable", "any"]
TenantDecider = Callable[[str], bool]


def _is_tenant_id(value: str) -> bool:
    return _TENANT_ID.fullmatch(value) is not None


def _allowlist(tenants: object) -> tuple[str, ...]:
    if isinstance(tenants, str | bytes) or not isinstance(tenants, Iterable):
        raise TypeError(
            "tenants must be a list of tenant ids, or a callable tenant id -> bool "
            "(a lone string is not a list)"
        )
    ids: list[str] = []
    for tenant in tenants:
        if not isinstance(tenant, str):
            raise TypeError(f"tenants must hold strings, got {type(tenant).__name__}")
        if not _is_tenant_id(tenant):
            raise ValueError(
                f"tenant id {tenant[:140]!r} is not valid: 1-128 letters, digits, '-', '_' "
                "or single dots, starting with a letter or digit"
            )
        ids.append(tenant)
    if not ids:
        raise ValueError("tenants must not be empty: list the tenant ids to trust")
    if len(set(ids)) > MAX_ALLOWED_TENANTS:
        raise ValueError(
            f"tenants may list at most {MAX_ALLOWED_TENANTS} ids; decide with a callable for more"
        )
    return tuple(dict.fromkeys(ids))


def _check_tenant_claim(name: object, claim_values: object) -> str | None:
    if name is None:
        return None
    if not isinstance(name, str):
        raise TypeError("tenant_claim must be a claim name (str) or None")
    if not name.strip():
        raise ValueError("tenant_claim must be a non-empty claim name, or None for no check")
    if isinstance(claim_values, Mapping) and name in claim_values:
        raise ValueError(
            f"claim_values names {name!r}, which tenant_claim sets to each tenant's id: "
            "remove it from claim_values"
        )
    return name


class IssuerTemplate:
    """Issuers that differ only by a tenant id, sharing one JWKS: Entra ID's
    ``https://login.microsoftonline.com/{tenant}/v2.0`` (v2 tokens) or
    ``https://sts.windows.net/{tenant}/`` (v1 tokens).

    ``{tenant}`` must fill one whole path segment. Each trusted tenant gets its own
    :class:`TokenVerifier` (exact ``iss``, its own verified-token cache); all of them share
    one key source on ``jwks_uri``, so one fetch and one cooldown serve every tenant and no
    tenant is ever discovered.

    Exactly one policy says which tenants are trusted:

    * ``tenants=[...]``: an allowlist of tenant ids (at most 10,000);
    * ``tenants=callable``: ``callable(tenant_id)`` returns True to trust it. It runs on
      the event loop for every token of a tenant (cache hits included), so it must be
      quick and never block; anything but True, and any exception (logged), refuses;
    * ``any_tenant=True``: every tenant. **Dangerous**: anyone can create an Entra tenant
      and obtain tokens for a multi-tenant application; check the tenant (``tid``) or
      the subject in the application before trusting anything.

    A tenant id is 1-128 letters, digits, ``-``, ``_`` and single dots: an ``iss`` that
    smuggles ``/``, ``..``, ``?`` or ``#`` into the tenant segment matches nothing.

    Args:
        template: the issuer with ``{tenant}`` where the tenant id goes.
        audience: the audience(s) every tenant's tokens must name.
        jwks_uri: the JWKS all tenants share (for Entra ID:
            ``https://login.microsoftonline.com/common/discovery/v2.0/keys``).
        tenants: the allowlist, or the callable deciding.
        any_tenant: trust every tenant (see above).
        max_tenants: tenant verifiers kept when a callable or ``any_tenant`` decides (the
            least recently verified one goes first, its cache with it); an allowlist keeps
            one per listed tenant. Memory is at most this times ``cache_size`` tokens.
        tenant_claim: the claim each tenant's token must carry with exactly the tenant id
            of its ``iss`` (default ``tid``, as Microsoft asks multi-tenant applications
            to check: v1 and v2 Entra tokens carry it); None for an identity provider
            whose tokens name their tenant in ``iss`` only.
        options: the other :class:`TokenVerifier` keywords (``algorithms``,
            ``scope_claims``, ``cache_size``, ``cooldown``, ``http_client``, ``clock``...),
            the same for every tenant; ``http_client`` and the fetch settings go to the
            shared key source.
    """

    def __init__(
        self,
        template: str,
        audience: str | Sequence[str],
        *,
        jwks_uri: str,
        tenants: Iterable[str] | TenantDecider | None = None,
        any_tenant: bool = False,
        max_tenants: int = DEFAULT_MAX_TENANTS,
        tenant_claim: str | None = DEFAULT_TENANT_CLAIM,
        **options: Any,
    ) -> None:
        if not isinstance(template, str):
            raise TypeError("template must be an issuer URL string with '{tenant}' in it")
        prefix, placeholder, suffix = template.partition(TENANT)
        rest = prefix + suffix
        if not placeholder or "{" in rest or "}" in rest:
            raise ValueError(
                f"template must hold '{TENANT}' exactly once and no other braces, "
                f"got {template!r:.200}"
            )
        if not (prefix.endswith("/") and urlsplit(prefix).path.startswith("/")) or (
            suffix and not suffix.startswith("/")
        ):
            raise ValueError(
                f"'{TENANT}' must fill a whole path segment of the template, as in "
                f"https://login.microsoftonline.com/{TENANT}/v2.0; got {template!r:.200}"
            )
        if not isinstance(jwks_uri, str):
            raise TypeError("jwks_uri must be the URL of the JWKS every tenant shares")
        if "key_source" in options:
            raise ValueError("an IssuerTemplate builds the one key source its tenants share")
        if not isinstance(any_tenant, bool):
            raise TypeError("any_tenant must be a bool")
        self._decide: TenantDecider | None = None
        self._allowed: tuple[str, ...] = ()
        policy: TenantPolicy
        if any_tenant:
            if tenants is not None:
                raise ValueError("give tenants=... or any_tenant=True, not both")
            policy = "any"
        elif tenants is None:
            raise ValueError(
                "say which tenants to trust: tenants=[tenant ids] or tenants=callable; "
                "any_tenant=True trusts every tenant (dangerous: anyone can create one)"
            )
        elif callable(tenants):
            if inspect.iscoroutinefunction(tenants):
                raise TypeError(
                    "tenants must be a plain callable tenant id -> bool, not async: it is "
                    "asked on the event loop for every token (keep an in-memory set fresh)"
                )
            self._decide = tenants
            policy = "callable"
        else:
            self._allowed = _allowlist(tenants)
            policy = "allowlist"
        self._policy: TenantPolicy = policy
        self._allowed_set = frozenset(self._allowed)
        limit = opt.count("max_tenants", max_tenants, low=1, high=100_000)
        self._max_tenants = len(self._allowed) if policy == "allowlist" else limit
        self._template = template
        self._prefix = prefix
        self._suffix = suffix
        # The owner of the shared key source; it checks every option once, here, and never
        # verifies a token (no token's iss holds the braces of its issuer).
        self._owner = TokenVerifier(template, audience, jwks_uri=jwks_uri, **options)
        self._tenant_claim = _check_tenant_claim(tenant_claim, options.get("claim_values"))
        self._options = {name: value for name, value in options.items() if name != "http_client"}
        # One DPoP policy (one replay store) for every tenant: a tenant's verifier rebuilt
        # after eviction must still know the proofs it accepted.
        self._options["dpop"] = self._owner.dpop_policy()
        self._audience = audience

    def __repr__(self) -> str:
        return f"IssuerTemplate({self._template!r}, tenants={self._policy})"

    @property
    def template(self) -> str:
        """The issuer with ``{tenant}`` in it."""
        return self._template

    @property
    def tenant_policy(self) -> TenantPolicy:
        """``allowlist``, ``callable`` (asked for every token) or ``any``."""
        return self._policy

    @property
    def tenants(self) -> tuple[str, ...]:
        """The allowlisted tenant ids (empty unless the policy is ``allowlist``)."""
        return self._allowed

    @property
    def issuers(self) -> tuple[str, ...]:
        """The concrete issuers of the allowlist (empty for a callable or any tenant:
        those cannot be listed)."""
        return tuple(self.issuer_for(tenant) for tenant in self._allowed)

    @property
    def tenant_claim(self) -> str | None:
        """The claim every tenant's token must carry with its tenant id (``tid``), or None."""
        return self._tenant_claim

    @property
    def max_tenants(self) -> int:
        """How many tenant verifiers are kept at most."""
        return self._max_tenants

    @property
    def audiences(self) -> tuple[str, ...]:
        """The accepted audiences."""
        return self._owner.audiences

    @property
    def key_source(self) -> RemoteKeySource:
        """The key source every tenant shares (``status()``, ``fetch_count``)."""
        return self._owner.key_source

    def dpop_policy(self, token: AccessToken | None = None) -> DPoPPolicy:
        """The DPoP policy every tenant shares (the ``dpop`` option; see
        :meth:`TokenVerifier.dpop_policy`)."""
        return self._owner.dpop_policy(token)

    def issuer_for(self, tenant: str) -> str:
        """The concrete issuer of ``tenant`` (no policy check)."""
        return self._prefix + tenant + self._suffix

    def tenant_of(self, issuer: str) -> str | None:
        """The tenant id when ``issuer`` is this template with a well-formed tenant id in
        place of ``{tenant}``, else None (trusted or not: see :meth:`allows`)."""
        prefix, suffix = self._prefix, self._suffix
        if (
            len(issuer) <= len(prefix) + len(suffix)
            or not issuer.startswith(prefix)
            or not issuer.endswith(suffix)
        ):
            return None
        tenant = issuer[len(prefix) : len(issuer) - len(suffix)]
        return tenant if _is_tenant_id(tenant) else None

    def allows(self, tenant: str) -> bool:
        """True when the policy trusts ``tenant`` now. Never raises: a failing callable
        is logged and refuses."""
        if self._policy == "allowlist":
            return tenant in self._allowed_set
        decide = self._decide
        if decide is None:
            return True  # any_tenant=True
        try:
            return decide(tenant) is True
        except Exception as exc:
            logger.error(
                "the tenant callable of %s failed (%s): tenant %s refused",
                self._template,
                type(exc).__name__,
                clean(tenant, 40),
                exc_info=exc,
            )
            return False

    def build(self, tenant: str) -> TokenVerifier:
        """A new :class:`TokenVerifier` for ``tenant`` sharing this template's key source
        (no policy check: :class:`TrustedIssuers` asks :meth:`allows` first)."""
        if not isinstance(tenant, str) or not _is_tenant_id(tenant):
            raise ValueError(f"not a valid tenant id: {tenant!r:.140}")
        options = self._options
        if self._tenant_claim is not None:
            values = {**(options.get("claim_values") or {}), self._tenant_claim: tenant}
            options = {**options, "claim_values": values}
        return TokenVerifier(
            self.issuer_for(tenant), self._audience, key_source=self.key_source, **options
        )

    async def start(self) -> None:
        """Fetch the shared keys now and keep them fresh (see :meth:`TokenVerifier.start`)."""
        await self._owner.start()

    async def aclose(self) -> None:
        """Stop refreshing the shared keys; close the HTTP client the template created."""
        await self._owner.aclose()


# One remembered acceptance: the verifier that accepted a token, and the template and
# tenant to ask again when a callable decides (else None and "").
_Route = tuple[TokenVerifier, IssuerTemplate | None, str]


class TrustedIssuers(Lifecycle):
    """Verifies bearer JWTs of several issuers: each token goes to the verifier of its
    ``iss``. Meets :class:`~resource_guard.Verifier`, so ``BearerAuthMiddleware``,
    ``require_scopes`` and the other adapters take it like a :class:`TokenVerifier`.

    ``iss`` is read unverified (the strict parser, size-bounded) and matched exactly
    (case, trailing slash and all): first against the configured issuers, then against
    each :class:`IssuerTemplate` in order. A token whose ``iss`` is missing, not a string,
    unknown, or a tenant no template trusts is refused with
    :class:`~resource_guard.UnknownIssuerError` (401 ``invalid_token``) before any key is
    looked up or fetched. Otherwise the chosen verifier checks everything, the signature
    proving the ``iss``; :attr:`AccessToken.issuer <resource_guard.AccessToken.issuer>`
    names the issuer that accepted the token.

    Each issuer keeps its own verified-token cache, cooldown and key source (tenants of a
    template share the template's), so a flood naming many issuers costs each issuer's
    IdP at most one fetch per cooldown.

    Args:
        verifiers: the :class:`TokenVerifier` of each issuer (each with its own audience,
            algorithms, scope claims, keys) and any :class:`IssuerTemplate`. Two entries
            for one issuer are a ValueError.
        max_token_bytes: longer tokens are refused before ``iss`` is read (each verifier
            keeps its own bound).
        cache_size: how many recently accepted tokens remember their issuer, so that
            :meth:`cached` answers with one look-up (0: every token goes to :meth:`verify`).
    """

    def __init__(
        self,
        verifiers: Iterable[TokenVerifier | IssuerTemplate],
        *,
        max_token_bytes: int = DEFAULT_MAX_TOKEN_BYTES,
        cache_size: int = DEFAULT_ROUTES,
    ) -> None:
        if isinstance(verifiers, TokenVerifier | IssuerTemplate) or not isinstance(
            verifiers, Iterable
        ):
            raise TypeError("verifiers must be a list of TokenVerifier and IssuerTemplate")
        members = tuple(verifiers)
        if not members:
            raise ValueError("verifiers must not be empty: give one TokenVerifier per issuer")
        exact: dict[str, TokenVerifier] = {}
        templates: dict[str, IssuerTemplate] = {}
        seen: set[str] = set()
        for member in members:
            if isinstance(member, TokenVerifier):
                issuers: tuple[str, ...] = (member.issuer,)
                exact[member.issuer] = member
            elif isinstance(member, IssuerTemplate):
                if member.template in templates:
                    raise ValueError(f"template {member.template!r:.200} is configured twice")
                templates[member.template] = member
                issuers = member.issuers
            else:
                raise TypeError(
                    "verifiers must hold TokenVerifier and IssuerTemplate objects, "
                    f"got {type(member).__name__}"
                )
            for issuer in issuers:
                if issuer in seen:
                    raise ValueError(f"issuer {issuer!r:.200} is configured twice")
                seen.add(issuer)
        self._members = members
        self._exact = exact
        # Per template, in the order they are tried: its tenants' verifiers by issuer,
        # least recently verified first.
        self._tenants: dict[IssuerTemplate, OrderedDict[str, TokenVerifier]] = {
            template: OrderedDict() for template in templates.values()
        }
        self._parser = TokenParser(
            opt.count("max_token_bytes", max_token_bytes, low=256, high=1024 * 1024)
        )
        self._route_size = opt.count("cache_size", cache_size, low=0, high=10_000_000)
        self._routes: OrderedDict[int, _Route] = OrderedDict()

    def __repr__(self) -> str:
        return f"TrustedIssuers(issuers={self.issuers!r}, templates={self.templates!r})"

    # -- properties --------------------------------------------------------------------

    @property
    def issuers(self) -> tuple[str, ...]:
        """Every issuer that can be listed: the verifiers', then each allowlisted
        template's tenants. A template deciding by callable or trusting any tenant adds
        none (see :attr:`templates`)."""
        listed: list[str] = []
        for member in self._members:
            if isinstance(member, TokenVerifier):
                listed.append(member.issuer)
            else:
                listed.extend(member.issuers)
        return tuple(listed)

    @property
    def templates(self) -> tuple[IssuerTemplate, ...]:
        """The tenant templates, in the order they are tried."""
        return tuple(self._tenants)

    @property
    def audiences(self) -> tuple[str, ...]:
        """Every audience some issuer accepts (in order, without repeats)."""
        found = (audience for member in self._members for audience in member.audiences)
        return tuple(dict.fromkeys(found))

    def trusts(self, issuer: str) -> bool:
        """True when a token naming ``issuer`` would go to a verifier now (no verifier is
        built: cheaper than :meth:`verifier_for` for a template's new tenant)."""
        if not isinstance(issuer, str):
            return False
        return issuer in self._exact or self._tenant(issuer) is not None

    def verifier_for(self, issuer: str) -> TokenVerifier | None:
        """The verifier that judges tokens of ``issuer`` (such as an
        :attr:`AccessToken.issuer <resource_guard.AccessToken.issuer>`), or None when no
        entry trusts it now. For a template's tenant: its current verifier, or a new one
        sharing the template's keys."""
        if not isinstance(issuer, str):
            return None
        try:
            return self._pick(issuer)[0]
        except UnknownIssuerError:
            return None

    def dpop_policy(self, token: AccessToken | None = None) -> DPoPPolicy:
        """The DPoP policy of the entry that accepted ``token`` (see
        :meth:`TokenVerifier.dpop_policy`): its issuer's verifier, or the template of its
        tenant (found without asking a tenant callable again or building a verifier, so
        the policy of an accepted token never changes). With None, or an issuer no entry
        knows, the first entry's: what a request without a token is challenged with."""
        member = None if token is None else self._member_of(token.issuer)
        if member is None:
            member = self._members[0]
        return member.dpop_policy(token)

    def _member_of(self, issuer: str) -> TokenVerifier | IssuerTemplate | None:
        """The entry behind tokens of ``issuer``: its verifier, else the template holding
        a verifier for it, else the first template it fits; no policy is asked."""
        found = self._exact.get(issuer)
        if found is not None:
            return found
        shaped: IssuerTemplate | None = None
        for template, known in self._tenants.items():
            if issuer in known:
                return template
            if shaped is None and template.tenant_of(issuer) is not None:
                shaped = template
        return shaped

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Start every verifier and template (concurrently): keys are fetched now and kept
        fresh. If one raises (``fail_fast``), all are closed and its error raised."""
        errors = await _run_all(member.start for member in self._members)
        if errors:
            await self.aclose()
            raise errors[0]

    async def aclose(self) -> None:
        """Close every verifier and template, each even if another fails (the first
        error is raised after all ran)."""
        errors = await _run_all(member.aclose for member in self._members)
        if errors:
            raise errors[0]

    # -- verification ------------------------------------------------------------------

    async def verify(self, token: str) -> AccessToken:
        """Verify ``token`` with the verifier of its ``iss`` and return what it grants.

        Raises :class:`~resource_guard.UnknownIssuerError` (no request made) when no
        entry trusts the ``iss``, MalformedTokenError when it cannot be read, else what
        the chosen :meth:`TokenVerifier.verify` raises.
        """
        if type(token) is str:
            found = self._remembered(token)
            if found is not None:
                return found
        header: Header | None = None
        try:
            header, payload, _, _ = self._parser.split(token)
            verifier, template, tenant = self._pick(decode_payload(payload).get("iss"))
        except InvalidTokenError as exc:
            if header is not None:
                exc.kid = None if header.kid is None else clean(header.kid, 64)
                exc.alg = clean(header.alg, 20)
            logger.debug("token refused (%s): %s", exc.code, exc.message)
            raise
        access_token = await verifier.verify(token)
        self._accepted(token, verifier, template, tenant)
        return access_token

    def cached(self, token: str | bytes) -> AccessToken | None:
        """The AccessToken of a token accepted before, without waiting; else None.

        Answers only what the accepting verifier's own :meth:`TokenVerifier.cached`
        answers (time window, key not revoked, keys usable) and, for a tenant a callable
        decides, only while the callable still trusts it. Always None while :meth:`verify`
        is overridden, here or on that verifier. Never waits, never raises.
        """
        if type(self).verify is not _VERIFY or "verify" in self.__dict__:
            return None
        kind = type(token)
        if kind is not str and kind is not bytes:
            return None
        return self._remembered(token)

    def _remembered(self, token: str | bytes) -> AccessToken | None:
        """A token's answer from the verifier that accepted it, found by the token's
        ``hash()`` (equal for a str and its ASCII bytes). The hash only routes: that
        verifier's own cache, keyed by a cryptographic digest, decides."""
        if len(token) > self._parser.max_length:
            return None  # never accepted: not worth hashing
        routes = self._routes
        key = hash(token)
        route = routes.get(key)
        if route is None:
            return None
        routes.move_to_end(key)
        verifier, template, tenant = route
        if template is not None and not template.allows(tenant):
            return None
        return verifier.cached(token)

    def _pick(self, issuer: object) -> tuple[TokenVerifier, IssuerTemplate | None, str]:
        """The verifier for an unverified ``iss``, with its template and tenant (None and
        "" for a configured issuer); UnknownIssuerError when nothing trusts it."""
        if not isinstance(issuer, str):
            raise _unknown("is missing" if issuer is None else "is not a string", issuer)
        verifier = self._exact.get(issuer)
        if verifier is not None:
            return verifier, None, ""
        found = self._tenant(issuer)
        if found is not None:
            template, tenant = found
            known = self._tenants[template].get(issuer)
            return known or template.build(tenant), template, tenant
        if any(template.tenant_of(issuer) is not None for template in self._tenants):
            raise _unknown("names a tenant that is not trusted", issuer)
        raise _unknown("names no trusted issuer", issuer)

    def _tenant(self, issuer: str) -> tuple[IssuerTemplate, str] | None:
        """The first template trusting the tenant of ``issuer`` now, and the tenant."""
        for template in self._tenants:
            tenant = template.tenant_of(issuer)
            if tenant is not None and template.allows(tenant):
                return template, tenant
        return None

    def _accepted(
        self, token: str, verifier: TokenVerifier, template: IssuerTemplate | None, tenant: str
    ) -> None:
        """Remember which verifier accepted ``token``; keep a tenant's verifier (only once
        a token of it verified, so forged tokens never push a tenant out)."""
        if template is not None:
            known = self._tenants[template]
            issuer = verifier.issuer
            known.setdefault(issuer, verifier)
            known.move_to_end(issuer)
            if len(known) > template.max_tenants:
                _, evicted = known.popitem(last=False)
                if evicted.token_cache is not None:
                    evicted.token_cache.clear()  # routes to it answer None from now on
            if template.tenant_policy != "callable":
                template = None  # an allowlist or any_tenant never changes its mind
        if self._route_size:
            routes = self._routes
            routes[hash(token)] = (verifier, template, tenant)
            if len(routes) > self._route_size:
                routes.popitem(last=False)


_VERIFY = TrustedIssuers.verify
"""TrustedIssuers' own verify(): :meth:`TrustedIssuers.cached` answers only while it is the
one in force."""


def _unknown(reason: str, issuer: object) -> UnknownIssuerError:
    error = UnknownIssuerError("iss", reason)
    error.details = MappingProxyType({"claim": "iss", "actual_iss": clean(issuer)})
    return error


async def _run_all(calls: Iterable[Callable[[], Awaitable[None]]]) -> list[BaseException]:
    """Run every call concurrently to its end; the exceptions raised, in order."""
    results = await asyncio.gather(*(call() for call in calls), return_exceptions=True)
    return [result for result in results if isinstance(result, BaseException)]
