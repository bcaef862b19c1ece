"""Pure claim checks: NumericDate types, time windows with leeway, iss, aud, typ, scopes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pytest

from resource_guard._claims import ClaimRules, ScopeRules
from resource_guard.exceptions import (
    ExpiredTokenError,
    ImmatureTokenError,
    InvalidAudienceError,
    InvalidClaimError,
    InvalidIssuerError,
    InvalidTokenTypeError,
)

NOW = 1_800_000_000.0
ISSUER = "https://idp.example.com/oauth2/default"
RULES = ClaimRules(ISSUER, frozenset({"api://orders", "api://other"}), leeway=30)


def claims(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"iss": ISSUER, "aud": "api://orders", "exp": NOW + 60, "sub": "u"}
    base.update(changes)
    return {name: value for name, value in base.items() if value is not ...}


def test_accepts_good_claims_and_returns_the_time_window() -> None:
    assert RULES.check(claims(nbf=NOW - 5), NOW) == (NOW + 60, NOW - 5)


@pytest.mark.parametrize(
    ("changes", "error", "claim"),
    [
        pytest.param({"exp": ...}, InvalidClaimError, "exp", id="exp-missing"),
        pytest.param({"exp": str(NOW + 60)}, InvalidClaimError, "exp", id="exp-string"),
        pytest.param({"exp": True}, InvalidClaimError, "exp", id="exp-bool"),
        pytest.param({"exp": None}, InvalidClaimError, "exp", id="exp-null"),
        pytest.param({"exp": [NOW + 60]}, InvalidClaimError, "exp", id="exp-list"),
        pytest.param({"exp": float("inf")}, InvalidClaimError, "exp", id="exp-infinite"),
        pytest.param({"exp": 10**20}, InvalidClaimError, "exp", id="exp-beyond-year-9999"),
        pytest.param({"exp": 10**400}, InvalidClaimError, "exp", id="exp-beyond-float"),
        pytest.param({"nbf": -(10**400)}, InvalidClaimError, "nbf", id="nbf-beyond-float"),
        pytest.param({"iat": 10**400}, InvalidClaimError, "iat", id="iat-beyond-float"),
        pytest.param({"exp": -1}, InvalidClaimError, "exp", id="exp-negative"),
        pytest.param({"nbf": "0"}, InvalidClaimError, "nbf", id="nbf-string"),
        pytest.param({"iat": False}, InvalidClaimError, "iat", id="iat-bool"),
        pytest.param({"exp": NOW - 31}, ExpiredTokenError, "exp", id="expired-beyond-leeway"),
        pytest.param({"nbf": NOW + 31}, ImmatureTokenError, "nbf", id="nbf-beyond-leeway"),
        pytest.param({"iat": NOW + 31}, ImmatureTokenError, "iat", id="iat-in-future"),
        pytest.param({"iss": ...}, InvalidIssuerError, "iss", id="iss-missing"),
        pytest.param({"iss": ISSUER + "/"}, InvalidIssuerError, "iss", id="iss-trailing-slash"),
        pytest.param({"iss": ISSUER + ".evil"}, InvalidIssuerError, "iss", id="iss-suffix"),
        pytest.param({"iss": ISSUER[:-1]}, InvalidIssuerError, "iss", id="iss-prefix"),
        pytest.param({"iss": ISSUER.upper()}, InvalidIssuerError, "iss", id="iss-case"),
        pytest.param({"iss": [ISSUER]}, InvalidIssuerError, "iss", id="iss-list"),
        pytest.param({"aud": ...}, InvalidAudienceError, "aud", id="aud-missing"),
        pytest.param({"aud": "api://billing"}, InvalidAudienceError, "aud", id="aud-other"),
        pytest.param({"aud": "api://orders/"}, InvalidAudienceError, "aud", id="aud-near-miss"),
        pytest.param({"aud": []}, InvalidAudienceError, "aud", id="aud-empty-list"),
        pytest.param({"aud": ["x", "y"]}, InvalidAudienceError, "aud", id="aud-list-others"),
        pytest.param({"aud": ["api://orders", 7]}, InvalidAudienceError, "aud", id="aud-mixed"),
        pytest.param({"aud": {"api://orders": 1}}, InvalidAudienceError, "aud", id="aud-object"),
        pytest.param({"aud": None}, InvalidAudienceError, "aud", id="aud-null"),
        pytest.param({"sub": 42}, InvalidClaimError, "sub", id="sub-number"),
        pytest.param({"client_id": ["c"]}, InvalidClaimError, "client_id", id="client_id-list"),
        pytest.param({"jti": 1}, InvalidClaimError, "jti", id="jti-number"),
    ],
)
def test_refuses_bad_claims(
    changes: dict[str, Any], error: type[InvalidClaimError], claim: str
) -> None:
    with pytest.raises(error) as caught:
        RULES.check(claims(**changes), NOW)
    assert type(caught.value) is error
    assert caught.value.claim == claim


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"exp": NOW - 30}, id="exp-within-leeway"),
        pytest.param({"nbf": NOW + 30}, id="nbf-within-leeway"),
        pytest.param({"iat": NOW + 30}, id="iat-within-leeway"),
        pytest.param({"aud": ["x", "api://other"]}, id="aud-list-with-one-match"),
        pytest.param({"exp": int(NOW) + 60}, id="exp-int"),
        pytest.param({"sub": ...}, id="no-sub"),
    ],
)
def test_accepts_edge_values(changes: dict[str, Any]) -> None:
    RULES.check(claims(**changes), NOW)


def test_required_claims_are_enforced() -> None:
    rules = ClaimRules(ISSUER, frozenset({"api://orders"}), 0, required=("tenant",))
    with pytest.raises(InvalidClaimError) as caught:
        rules.check(claims(), NOW)
    assert caught.value.claim == "tenant"
    rules.check(claims(tenant="t1"), NOW)


def test_zero_leeway_is_exact() -> None:
    rules = ClaimRules(ISSUER, frozenset({"api://orders"}), 0)
    rules.check(claims(exp=NOW), NOW)
    with pytest.raises(ExpiredTokenError):
        rules.check(claims(exp=NOW - 1), NOW)


@pytest.mark.parametrize(
    "typ", [None, "at+jwt", "AT+JWT", "application/at+jwt", "JWT", "jwt", "application/jwt"]
)
def test_accepts_access_token_types(typ: str | None) -> None:
    RULES.check_type(typ)


@pytest.mark.parametrize(
    "typ", ["dpop+jwt", "logout+jwt", "secevent+jwt", "id_token", "JOSE", "", "at+jwt "]
)
def test_refuses_other_token_types(typ: str) -> None:
    with pytest.raises(InvalidTokenTypeError):
        RULES.check_type(typ)


@pytest.mark.parametrize("typ", [None, "JWT", "application/jwt"])
def test_strict_mode_requires_at_jwt(typ: str | None) -> None:
    strict = ClaimRules(ISSUER, frozenset({"api://orders"}), 30, strict=True)
    strict.check_type("application/at+jwt")
    with pytest.raises(InvalidTokenTypeError):
        strict.check_type(typ)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        pytest.param({}, set(), id="none"),
        pytest.param({"scope": "a b  c"}, {"a", "b", "c"}, id="scope-string"),
        pytest.param({"scope": ""}, set(), id="scope-empty"),
        pytest.param({"scp": ["a", "b"]}, {"a", "b"}, id="scp-list"),
        pytest.param({"scp": "a b"}, {"a", "b"}, id="scp-string"),
        pytest.param({"scope": "a", "scp": ["b"]}, {"a", "b"}, id="union"),
        pytest.param({"scope": " a  b "}, {"a", "b"}, id="runs-of-spaces"),
    ],
)
def test_extracts_scopes(payload: dict[str, Any], expected: set[str]) -> None:
    assert ScopeRules().extract(payload) == expected


@pytest.mark.parametrize(
    ("claim", "value", "expected"),
    [
        pytest.param("scope", "read\twrite", set(), id="tab"),
        pytest.param("scope", "read\nwrite", set(), id="newline"),
        pytest.param("scope", "read\r\nwrite admin", {"admin"}, id="crlf-then-space"),
        pytest.param("scp", "read\x0bwrite", set(), id="vertical-tab"),
        pytest.param("scope", "read\u00a0write", set(), id="no-break-space"),
        pytest.param("scope", "read\u2003write", set(), id="em-space"),
        pytest.param("scope", 'a "quoted" b\\', {"a"}, id="quote-and-backslash"),
    ],
)
def test_scope_strings_split_on_single_spaces_only(
    claim: str, value: str, expected: set[str]
) -> None:
    """RFC 6749 §3.3: scope tokens are separated by %x20 and hold no other white space;
    a malformed token grants nothing, neither whole nor in pieces."""
    assert ScopeRules().extract({claim: value}) == expected


@pytest.mark.parametrize(
    "payload",
    [{"scope": 5}, {"scope": ["a", 1]}, {"scp": {"a": True}}, {"scope": True}],
    ids=["number", "mixed-list", "object", "bool"],
)
def test_refuses_scopes_of_the_wrong_type(payload: dict[str, Any]) -> None:
    with pytest.raises(InvalidClaimError):
        ScopeRules().extract(payload)


def test_scope_claims_follow_dotted_paths() -> None:
    rules = ScopeRules(claims=("realm_access.roles", "permissions", "missing.path"))
    payload = {"realm_access": {"roles": ["admin"]}, "permissions": ["orders:read"]}
    assert rules.extract(payload) == {"admin", "orders:read"}


def test_dotted_path_through_a_non_object_finds_nothing() -> None:
    assert ScopeRules(claims=("a.b",)).extract({"a": "text"}) == frozenset()


def test_a_literal_claim_name_with_dots_wins() -> None:
    rules = ScopeRules(claims=("https://example.com/roles",))
    assert rules.extract({"https://example.com/roles": ["r1"]}) == {"r1"}


def test_scope_mapper_adds_scopes() -> None:
    def temporal(payload: Mapping[str, Any]) -> Iterable[str]:
        return [f"{p}" for p in payload.get("permissions", [])]

    rules = ScopeRules(mapper=temporal)
    assert rules.extract({"scope": "a", "permissions": ["default:read"]}) == {"a", "default:read"}


@pytest.mark.parametrize(
    "mapped",
    ["a b", [1, "a"], [{"x": 1}], ["a", None], [""], ["a b"], 5],
    ids=["string", "number", "object", "null", "empty", "space", "not-iterable"],
)
def test_scope_mapper_output_is_checked(mapped: object) -> None:
    """A mapper fed by a signed claim must not turn odd claim values into a 500."""
    with pytest.raises(InvalidClaimError) as caught:
        ScopeRules(mapper=lambda _: mapped).extract({})  # type: ignore[arg-type,return-value]
    assert caught.value.claim == "scope_mapper"


def test_a_failing_scope_mapper_refuses_the_token(caplog: pytest.LogCaptureFixture) -> None:
    def broken(claims: Mapping[str, Any]) -> Iterable[str]:
        return [str(item) for item in claims["permissions"]]  # KeyError without the claim

    with pytest.raises(InvalidClaimError, match="scope_mapper"):
        ScopeRules(mapper=broken).extract({"sub": "u"})
    assert "KeyError" in caplog.text


def test_unusual_but_valid_claim_types_pass() -> None:
    """An int subclass for exp (JSON never makes one, a mapping may) is a number too."""

    class Seconds(int):
        pass

    assert RULES.check(claims(exp=Seconds(int(NOW) + 60)), NOW) == (NOW + 60, None)


COGNITO = ClaimRules(
    ISSUER,
    frozenset({"app-1"}),
    leeway=30,
    audience_claim="client_id",
    claim_values=(("token_use", "access"), ("version", 2), ("on", True)),
)


def cognito_claims(**changes: Any) -> dict[str, Any]:
    base = {"client_id": "app-1", "token_use": "access", "version": 2, "on": True, "aud": ...}
    return claims(**{**base, **changes})


def test_the_audience_claim_may_be_another_claim() -> None:
    """With ``audience_claim="client_id"`` the token needs no ``aud``."""
    assert COGNITO.check(cognito_claims(), NOW) == (NOW + 60, None)


@pytest.mark.parametrize(
    ("changes", "error", "claim"),
    [
        pytest.param({"client_id": "app-2"}, InvalidAudienceError, "client_id", id="other-app"),
        pytest.param({"client_id": ...}, InvalidAudienceError, "client_id", id="no-client-id"),
        pytest.param({"client_id": ..., "aud": "app-1"}, InvalidAudienceError, "client_id",
                     id="aud-does-not-count"),
        pytest.param({"token_use": "id"}, InvalidClaimError, "token_use", id="id-token"),
        pytest.param({"token_use": ...}, InvalidClaimError, "token_use", id="value-missing"),
        pytest.param({"version": "2"}, InvalidClaimError, "version", id="string-for-int"),
        pytest.param({"on": 1}, InvalidClaimError, "on", id="int-for-bool"),
        pytest.param({"version": True}, InvalidClaimError, "version", id="bool-for-int"),
    ],
)  # fmt: skip
def test_audience_claim_and_claim_values_refuse_naming_the_claim(
    changes: dict[str, Any], error: type[InvalidClaimError], claim: str
) -> None:
    with pytest.raises(error) as refused:
        COGNITO.check(cognito_claims(**changes), NOW)
    assert type(refused.value) is error
    assert refused.value.claim == claim
