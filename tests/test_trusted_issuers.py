"""TrustedIssuers: the token's unverified ``iss`` picks one TokenVerifier, which decides."""

from __future__ import annotations

import asyncio
import inspect
import logging
import types
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest

from resource_guard import (
    AccessToken,
    ExpiredTokenError,
    InvalidSignatureError,
    InvalidTokenError,
    IssuerTemplate,
    KeysUnavailableError,
    MalformedTokenError,
    TokenVerifier,
    TrustedIssuers,
    UnknownIssuerError,
    UnknownKeyError,
    Verifier,
)
from resource_guard import _issuers as issuers_module
from resource_guard.testing import FakeClock, FakeIssuer, generate_key
from tests.helpers import ORDERS_AUDIENCE, compact, segment

BILLING_AUDIENCE = "api://billing"
ISSUER_A = "https://idp-a.test/oauth2/default"
ISSUER_B = "https://idp-b.test/realms/shop"


@pytest.fixture
def idp_a(clock: FakeClock) -> FakeIssuer:
    return FakeIssuer(ISSUER_A, audience=ORDERS_AUDIENCE, algorithm="ES256", clock=clock)


@pytest.fixture
def idp_b(clock: FakeClock) -> FakeIssuer:
    return FakeIssuer(ISSUER_B, audience=BILLING_AUDIENCE, algorithm="EdDSA", clock=clock)


def verifier_of(idp: FakeIssuer, audience: str, clock: FakeClock, **options: Any) -> TokenVerifier:
    """A verifier of ``idp`` fetching keys in-process."""
    return TokenVerifier(
        idp.issuer, audience, clock=clock, http_client=idp.async_client(), **options
    )


@pytest.fixture
def trusted(idp_a: FakeIssuer, idp_b: FakeIssuer, clock: FakeClock) -> TrustedIssuers:
    """Orders tokens from A; billing tokens from B, whose scopes are ``permissions``."""
    return TrustedIssuers(
        [
            verifier_of(idp_a, ORDERS_AUDIENCE, clock),
            verifier_of(idp_b, BILLING_AUDIENCE, clock, scope_claims=("permissions",)),
        ]
    )


def requests_made(*idps: FakeIssuer) -> int:
    return sum(sum(idp.counts.values()) for idp in idps)


# -- construction ------------------------------------------------------------------------------


def test_it_is_a_verifier(trusted: TrustedIssuers) -> None:
    """The protocol (mypy checks the assignment); the middleware's fast path needs a
    ``cached`` that is no coroutine function."""
    checked: Verifier = trusted
    for name in ("verify", "start", "aclose"):
        assert inspect.iscoroutinefunction(getattr(checked, name))
    assert not inspect.iscoroutinefunction(checked.cached)


@pytest.mark.parametrize(
    ("verifiers", "error", "message"),
    [
        pytest.param([], ValueError, "must not be empty", id="empty"),
        pytest.param(None, TypeError, "a list of TokenVerifier", id="none"),
        pytest.param(["https://idp.test"], TypeError, "got str", id="an-issuer-string"),
        pytest.param([object()], TypeError, "got object", id="not-a-verifier"),
    ],
)
def test_a_wrong_set_of_verifiers_is_refused(verifiers: Any, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        TrustedIssuers(verifiers)


def test_one_verifier_instead_of_a_list_is_a_type_error(idp_a: FakeIssuer) -> None:
    with pytest.raises(TypeError, match="a list of TokenVerifier"):
        TrustedIssuers(TokenVerifier(idp_a.issuer, ORDERS_AUDIENCE))  # type: ignore[arg-type]


def test_two_verifiers_of_one_issuer_are_refused(idp_a: FakeIssuer) -> None:
    first = TokenVerifier(idp_a.issuer, ORDERS_AUDIENCE)
    second = TokenVerifier(idp_a.issuer, BILLING_AUDIENCE)
    with pytest.raises(ValueError, match="configured twice"):
        TrustedIssuers([first, second])
    with pytest.raises(ValueError, match="configured twice"):
        TrustedIssuers([first, first])


def test_a_verifier_of_an_allowlisted_tenant_is_a_duplicate() -> None:
    template = IssuerTemplate(
        "https://login.idp.test/{tenant}/v2.0",
        ORDERS_AUDIENCE,
        jwks_uri="https://login.idp.test/keys",
        tenants=["t1", "t2"],
    )
    same = TokenVerifier("https://login.idp.test/t2/v2.0", ORDERS_AUDIENCE)
    with pytest.raises(ValueError, match=r"t2/v2\.0' is configured twice"):
        TrustedIssuers([template, same])
    twin = IssuerTemplate(
        template.template, ORDERS_AUDIENCE, jwks_uri="https://login.idp.test/keys", any_tenant=True
    )
    with pytest.raises(ValueError, match=r"template .* is configured twice"):
        TrustedIssuers([template, twin])


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"max_token_bytes": 100}, ValueError),
        ({"max_token_bytes": "16k"}, TypeError),
        ({"cache_size": -1}, ValueError),
        ({"cache_size": 1.5}, TypeError),
    ],
)
def test_options_are_checked(idp_a: FakeIssuer, options: dict[str, Any], error: type) -> None:
    with pytest.raises(error):
        TrustedIssuers([TokenVerifier(idp_a.issuer, ORDERS_AUDIENCE)], **options)


def test_properties(trusted: TrustedIssuers, idp_a: FakeIssuer, idp_b: FakeIssuer) -> None:
    assert trusted.issuers == (ISSUER_A, ISSUER_B)
    assert trusted.audiences == (ORDERS_AUDIENCE, BILLING_AUDIENCE)
    assert trusted.templates == ()
    first = trusted.verifier_for(ISSUER_A)
    assert first is not None
    assert first.issuer == ISSUER_A
    assert trusted.verifier_for(ISSUER_A + "/") is None
    assert trusted.verifier_for(42) is None  # type: ignore[arg-type]
    assert trusted.trusts(ISSUER_B)
    assert not trusted.trusts(ISSUER_B + "/")
    assert not trusted.trusts(None)  # type: ignore[arg-type]
    assert ISSUER_A in repr(trusted)
    assert "TrustedIssuers" in repr(trusted)


def test_audiences_are_listed_once() -> None:
    trusted = TrustedIssuers(
        [
            TokenVerifier(ISSUER_A, [ORDERS_AUDIENCE, BILLING_AUDIENCE]),
            TokenVerifier(ISSUER_B, BILLING_AUDIENCE),
        ]
    )
    assert trusted.audiences == (ORDERS_AUDIENCE, BILLING_AUDIENCE)


# -- picking the issuer ------------------------------------------------------------------------


async def test_each_issuer_s_tokens_go_to_its_own_verifier(
    trusted: TrustedIssuers, idp_a: FakeIssuer, idp_b: FakeIssuer
) -> None:
    orders = await trusted.verify(idp_a.mint("alice", scopes="orders:read"))
    billing = await trusted.verify(idp_b.mint("bob", claims={"permissions": ["invoices:pay"]}))
    assert (orders.issuer, orders.subject) == (ISSUER_A, "alice")
    assert orders.scopes == {"orders:read"}
    assert (billing.issuer, billing.subject) == (ISSUER_B, "bob")
    assert billing.scopes == {"invoices:pay"}


async def test_each_issuer_keeps_its_own_audience(
    trusted: TrustedIssuers, idp_a: FakeIssuer, idp_b: FakeIssuer
) -> None:
    """B's audience is not good enough for A: the verifier picked checks everything."""
    with pytest.raises(InvalidTokenError, match="'aud'"):
        await trusted.verify(idp_a.mint(audience=BILLING_AUDIENCE))


def claiming(idp: FakeIssuer, iss: object) -> str:
    """A token of ``idp`` whose ``iss`` is ``iss``: signed by its key when a string (PyJWT
    signs no other), else hand-built with its header (refused before any signature check)."""
    if isinstance(iss, str):
        return idp.mint(claims={"iss": iss})
    header = {"alg": idp.algorithm, "kid": idp.current_key.kid, "typ": "at+jwt"}
    return compact(header, {"iss": iss, "sub": "user-123", "aud": ORDERS_AUDIENCE})


REFUSED_ISSUERS: dict[str, object] = {
    "unknown": "https://evil.test/oauth2/default",
    "trailing-slash": ISSUER_A + "/",
    "last-character-removed": ISSUER_A[:-1],
    "upper-case": ISSUER_A.upper(),
    "case-of-host": ISSUER_A.replace("idp-a", "IDP-A"),
    "leading-space": " " + ISSUER_A,
    "trailing-nul": ISSUER_A + "\x00",
    "query-added": ISSUER_A + "?x=1",
    "fragment-added": ISSUER_A + "#",
    "empty": "",
    "number": 42,
    "list": [ISSUER_A],
    "object": {"iss": ISSUER_A},
    "null": None,
    "true": True,
}


@pytest.mark.parametrize("iss", REFUSED_ISSUERS.values(), ids=REFUSED_ISSUERS.keys())
async def test_an_issuer_nobody_trusts_is_refused_without_a_request(
    trusted: TrustedIssuers, idp_a: FakeIssuer, idp_b: FakeIssuer, iss: object
) -> None:
    """Signed by A's own key, even: the ``iss`` must match a configured issuer exactly."""
    with pytest.raises(UnknownIssuerError) as caught:
        await trusted.verify(claiming(idp_a, iss))
    assert caught.value.code == "unknown_issuer"
    assert caught.value.description == "the token's issuer is not trusted"
    assert caught.value.kid == idp_a.current_key.kid
    assert caught.value.alg == "ES256"
    assert caught.value.details["claim"] == "iss"
    assert requests_made(idp_a, idp_b) == 0


async def test_a_token_without_iss_is_refused_without_a_request(
    trusted: TrustedIssuers, idp_a: FakeIssuer, idp_b: FakeIssuer
) -> None:
    with pytest.raises(UnknownIssuerError, match="'iss' claim is missing"):
        await trusted.verify(idp_a.mint(omit=["iss"]))
    assert requests_made(idp_a, idp_b) == 0


async def test_the_refusal_names_the_issuer_for_the_logs_sanitised(
    trusted: TrustedIssuers, idp_a: FakeIssuer
) -> None:
    with pytest.raises(UnknownIssuerError) as caught:
        await trusted.verify(idp_a.mint(claims={"iss": "https://evil.test/\n" + "x" * 300}))
    actual = caught.value.details["actual_iss"]
    assert actual.startswith("https://evil.test/?x")
    assert len(actual) <= 100
    assert "not a string" in str(await _refusal(trusted, claiming(idp_a, 7)))


async def _refusal(trusted: TrustedIssuers, token: str) -> InvalidTokenError:
    try:
        await trusted.verify(token)
    except InvalidTokenError as exc:
        return exc
    raise AssertionError("accepted")  # pragma: no cover - the tests' own guard


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("", id="empty"),
        pytest.param("not-a-jwt", id="one-segment"),
        pytest.param("a.b", id="two-segments"),
        pytest.param(compact({"alg": "ES256"}, [ISSUER_A]), id="payload-a-list"),
        pytest.param(
            f"{segment({'alg': 'ES256'})}.{segment({'iss': ISSUER_A})}=.c2ln", id="padding"
        ),
        pytest.param(
            f"{segment({'alg': 'ES256'})}.e30x.c2ln",  # "{}1" is not JSON
            id="payload-not-json",
        ),
        pytest.param(compact({"typ": "JWT"}, {"iss": ISSUER_A}), id="header-without-alg"),
        pytest.param("x" * 20_000, id="too-large"),
    ],
)
async def test_a_malformed_token_is_refused_without_a_request(
    trusted: TrustedIssuers, idp_a: FakeIssuer, idp_b: FakeIssuer, token: str
) -> None:
    with pytest.raises(MalformedTokenError):
        await trusted.verify(token)
    assert requests_made(idp_a, idp_b) == 0


async def test_a_non_string_token_is_malformed(trusted: TrustedIssuers) -> None:
    with pytest.raises(MalformedTokenError, match="not a string"):
        await trusted.verify(b"a.b.c")  # type: ignore[arg-type]


async def test_max_token_bytes_bounds_the_read_of_iss(idp_a: FakeIssuer, clock: FakeClock) -> None:
    trusted = TrustedIssuers([verifier_of(idp_a, ORDERS_AUDIENCE, clock)], max_token_bytes=256)
    with pytest.raises(MalformedTokenError, match="larger than"):
        await trusted.verify(idp_a.mint(claims={"pad": "x" * 300}))
    assert requests_made(idp_a) == 0


async def test_a_token_of_b_claiming_to_be_a_s_is_refused(
    trusted: TrustedIssuers, idp_a: FakeIssuer, idp_b: FakeIssuer
) -> None:
    """The ``iss`` only routes: A's keys must verify the signature, and B's do not."""
    forged = idp_b.mint(claims={"iss": ISSUER_A})
    with pytest.raises(UnknownKeyError):
        await trusted.verify(forged)
    b_key = idp_b.current_key
    same_kid = idp_b.mint(claims={"iss": ISSUER_A}, key=b_key, kid=idp_a.current_key.kid)
    with pytest.raises(InvalidTokenError) as caught:
        await trusted.verify(same_kid)
    assert caught.value.code == "unknown_key"  # an EdDSA token, and A publishes an EC key
    attacker = generate_key("ES256", kid=idp_a.current_key.kid)
    with pytest.raises(InvalidSignatureError):
        await trusted.verify(idp_a.mint(key=attacker, kid=attacker.kid))


async def test_refusals_are_logged_at_debug_without_the_token(
    trusted: TrustedIssuers, idp_a: FakeIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    token = idp_a.mint(claims={"iss": "https://evil.test"})
    with (
        caplog.at_level(logging.DEBUG, logger="resource_guard.issuers"),
        pytest.raises(UnknownIssuerError),
    ):
        await trusted.verify(token)
    records = [r for r in caplog.records if r.name == "resource_guard.issuers"]
    assert [r.levelno for r in records] == [logging.DEBUG]
    assert "unknown_issuer" in records[0].getMessage()
    assert token not in caplog.text
    assert token.split(".")[1] not in caplog.text


# -- the no-wait path --------------------------------------------------------------------------


async def test_cached_answers_a_token_accepted_before(
    trusted: TrustedIssuers, idp_a: FakeIssuer, idp_b: FakeIssuer
) -> None:
    token_a, token_b = idp_a.mint(), idp_b.mint()
    assert trusted.cached(token_a) is None  # never seen
    verified_a = await trusted.verify(token_a)
    verified_b = await trusted.verify(token_b)
    assert trusted.cached(token_a) is verified_a
    assert trusted.cached(token_a.encode()) is verified_a  # the middleware hands bytes
    assert trusted.cached(token_b) is verified_b
    assert await trusted.verify(token_b) is verified_b  # verify answers it at once too


async def test_a_hash_collision_never_answers_a_token_as_another_issuer_s(
    trusted: TrustedIssuers, idp_a: FakeIssuer, idp_b: FakeIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """hash() only routes: with every token colliding, the route names the last verifier
    to accept one, whose own digest-keyed cache answers None for the other tokens."""
    monkeypatch.setattr(issuers_module, "hash", lambda _token: 0, raising=False)
    token_a, token_b, never = idp_a.mint(), idp_b.mint(), idp_a.mint("user-never-verified")
    verified_a = await trusted.verify(token_a)
    verified_b = await trusted.verify(token_b)  # takes the one route: to issuer B
    assert trusted.cached(token_b) is verified_b
    assert trusted.cached(token_a) is None  # B's cache does not hold A's token
    assert trusted.cached(never) is None
    assert trusted.cached(token_a.encode()) is None
    again = await trusted.verify(token_a)  # a miss: A's verifier judges it again
    assert again.issuer == ISSUER_A
    assert again is verified_a  # from A's own cache
    assert trusted.cached(token_a) is verified_a
    assert trusted.cached(token_b) is None  # the route now leads to A


@pytest.mark.parametrize(
    "value", [None, 42, bytearray(b"a.b.c"), ["a.b.c"], "a." * 10_000, b"a" * 20_000]
)
def test_cached_answers_none_for_what_is_not_a_token(trusted: TrustedIssuers, value: Any) -> None:
    assert trusted.cached(value) is None


async def test_cached_follows_the_verifier_s_rules(
    trusted: TrustedIssuers, idp_a: FakeIssuer, clock: FakeClock
) -> None:
    """A hit is exactly what verify would accept now: expired tokens are not answered."""
    token = idp_a.mint(expires_in=60)
    await trusted.verify(token)
    clock.advance(60 + 30 + 1)
    assert trusted.cached(token) is None
    with pytest.raises(ExpiredTokenError):
        await trusted.verify(token)


async def test_cached_drops_a_token_whose_key_was_revoked(
    trusted: TrustedIssuers, idp_a: FakeIssuer, clock: FakeClock
) -> None:
    token = idp_a.mint(expires_in=3600)
    await trusted.verify(token)
    old = idp_a.current_key
    idp_a.rotate_keys()
    idp_a.remove_key(old.kid)
    verifier = trusted.verifier_for(ISSUER_A)
    assert verifier is not None
    await verifier.key_source.refresh()
    assert trusted.cached(token) is None
    with pytest.raises(UnknownKeyError):
        await trusted.verify(token)


async def test_cached_answers_nothing_when_its_verifier_forgot(
    trusted: TrustedIssuers, idp_a: FakeIssuer
) -> None:
    token = idp_a.mint()
    await trusted.verify(token)
    verifier = trusted.verifier_for(ISSUER_A)
    assert verifier is not None
    assert verifier.token_cache is not None
    verifier.token_cache.clear()
    assert trusted.cached(token) is None


async def test_cache_size_bounds_what_is_remembered(idp_a: FakeIssuer, clock: FakeClock) -> None:
    trusted = TrustedIssuers([verifier_of(idp_a, ORDERS_AUDIENCE, clock)], cache_size=2)
    tokens = [idp_a.mint(f"user-{n}") for n in range(3)]
    for token in tokens:
        await trusted.verify(token)
    assert trusted.cached(tokens[0]) is None  # the least recently used left
    assert trusted.cached(tokens[1]) is not None
    assert trusted.cached(tokens[2]) is not None
    assert (await trusted.verify(tokens[0])).subject == "user-0"  # verify still answers


async def test_cache_size_0_sends_every_token_to_verify(
    idp_a: FakeIssuer, clock: FakeClock
) -> None:
    trusted = TrustedIssuers([verifier_of(idp_a, ORDERS_AUDIENCE, clock)], cache_size=0)
    token = idp_a.mint()
    verified = await trusted.verify(token)
    assert trusted.cached(token) is None
    assert await trusted.verify(token) is verified  # the verifier's own cache


async def replaced_verify(self: Any, token: str) -> AccessToken:
    raise InvalidTokenError("replaced")


def assigned(target: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    target.verify = types.MethodType(replaced_verify, target)


def mock_patched(target: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    patcher = mock.patch.object(target, "verify", side_effect=InvalidTokenError("mocked"))
    patcher.start()
    monkeypatch.setattr(target, "_test_patcher", patcher, raising=False)


def subclassed(target: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    class Audited(type(target)):  # type: ignore[misc]
        async def verify(self, token: str) -> AccessToken:
            result: AccessToken = await super().verify(token)
            return result

    monkeypatch.setattr(target, "__class__", Audited)


def class_patched(target: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(type(target), "verify", replaced_verify)


OVERRIDES = {
    "assigned": assigned,
    "mock-patch-object": mock_patched,
    "subclass": subclassed,
    "class-patched": class_patched,
}


@pytest.fixture
def stop_patchers(trusted: TrustedIssuers) -> Iterator[None]:
    yield
    for target in (trusted, trusted.verifier_for(ISSUER_A)):
        patcher = getattr(target, "_test_patcher", None)
        if patcher is not None:
            patcher.stop()


@pytest.mark.parametrize("override", OVERRIDES.values(), ids=OVERRIDES.keys())
@pytest.mark.parametrize("whose", ["trusted-issuers", "member"])
async def test_cached_is_none_whenever_a_verify_is_overridden(
    trusted: TrustedIssuers,
    idp_a: FakeIssuer,
    monkeypatch: pytest.MonkeyPatch,
    stop_patchers: None,
    override: Any,
    whose: str,
) -> None:
    """Whoever replaces verify(), here or on the verifier of the issuer, sees every token."""
    token = idp_a.mint()
    await trusted.verify(token)
    assert trusted.cached(token) is not None
    override(trusted if whose == "trusted-issuers" else trusted.verifier_for(ISSUER_A), monkeypatch)
    assert trusted.cached(token) is None
    assert trusted.cached(token.encode()) is None


async def test_a_member_s_override_runs_in_verify(
    trusted: TrustedIssuers, idp_a: FakeIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = idp_a.mint()
    await trusted.verify(token)
    assigned(trusted.verifier_for(ISSUER_A), monkeypatch)
    with pytest.raises(InvalidTokenError, match="replaced"):
        await trusted.verify(token)


async def test_a_cache_hit_asks_only_the_verifier_that_accepted_the_token(
    trusted: TrustedIssuers, idp_a: FakeIssuer, idp_b: FakeIssuer
) -> None:
    """Not a timing test: a hit hashes the token once more with Python's hash() and asks the
    one verifier that accepted it, whatever the number of issuers."""
    token = idp_b.mint()
    await trusted.verify(token)
    a, b = trusted.verifier_for(ISSUER_A), trusted.verifier_for(ISSUER_B)
    assert a is not None
    assert b is not None
    with (
        mock.patch.object(a, "cached", wraps=a.cached) as asked_a,
        mock.patch.object(b, "cached", wraps=b.cached) as asked_b,
    ):
        assert trusted.cached(token) is not None
    assert asked_a.call_count == 0
    assert asked_b.call_count == 1


# -- lifecycle ---------------------------------------------------------------------------------


async def test_start_and_aclose_reach_every_verifier(
    trusted: TrustedIssuers, idp_a: FakeIssuer, idp_b: FakeIssuer
) -> None:
    async with trusted as entered:
        assert entered is trusted
        assert idp_a.counts["jwks"] == 1
        assert idp_b.counts["jwks"] == 1
        assert len(asyncio.all_tasks()) == 3  # this test and two refreshers
    assert asyncio.all_tasks() == {asyncio.current_task()}


class FailingClose(TokenVerifier):
    async def aclose(self) -> None:
        await super().aclose()
        raise RuntimeError("close failed")


async def test_aclose_closes_every_verifier_even_if_one_fails(
    idp_a: FakeIssuer, idp_b: FakeIssuer, clock: FakeClock
) -> None:
    failing = FailingClose(
        idp_a.issuer, ORDERS_AUDIENCE, clock=clock, http_client=idp_a.async_client()
    )
    trusted = TrustedIssuers([failing, verifier_of(idp_b, BILLING_AUDIENCE, clock)])
    await trusted.start()
    with pytest.raises(RuntimeError, match="close failed"):
        await trusted.aclose()
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_a_failed_start_closes_the_others(idp_a: FakeIssuer, clock: FakeClock) -> None:
    idp_a.fault("status", status=404)
    broken = verifier_of(idp_a, ORDERS_AUDIENCE, clock, fail_fast=True)
    healthy_idp = FakeIssuer(ISSUER_B, audience=BILLING_AUDIENCE, algorithm="ES256", clock=clock)
    trusted = TrustedIssuers([broken, verifier_of(healthy_idp, BILLING_AUDIENCE, clock)])
    with pytest.raises(KeysUnavailableError) as caught:
        await trusted.start()
    assert caught.value.permanent
    assert healthy_idp.counts["jwks"] == 1
    assert asyncio.all_tasks() == {asyncio.current_task()}
