"""AccessToken: read-only views of the verified claims and scope checks."""

from __future__ import annotations

from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import pytest

from resource_guard import AccessToken, InsufficientScopeError


def token(**claims: Any) -> AccessToken:
    return AccessToken(
        claims=MappingProxyType(claims),
        scopes=frozenset({"orders:read", "orders:write"}),
        expires_at=datetime.fromtimestamp(2_000_000_000, UTC),
        subject="user-1",
    )


@pytest.mark.parametrize(
    ("aud", "expected"),
    [("api://a", ("api://a",)), (["api://a", "api://b"], ("api://a", "api://b")), (None, ())],
)
def test_audience_is_a_tuple(aud: object, expected: tuple[str, ...]) -> None:
    assert token(aud=aud).audience == expected


def test_token_id_and_issued_at() -> None:
    access = token(jti="abc", iat=1_900_000_000)
    assert access.token_id == "abc"
    assert access.issued_at == datetime.fromtimestamp(1_900_000_000, UTC)
    assert token().token_id is None
    assert token().issued_at is None


@pytest.mark.parametrize(
    ("required", "any_of", "granted"),
    [
        ((), False, True),
        (("orders:read",), False, True),
        (("orders:read", "orders:write"), False, True),
        (("orders:read", "admin"), False, False),
        (("orders:read", "admin"), True, True),
        (("admin", "root"), True, False),
    ],
)
def test_has_scopes(required: tuple[str, ...], any_of: bool, granted: bool) -> None:
    assert token().has_scopes(*required, any_of=any_of) is granted


def test_require_scopes_names_what_is_missing() -> None:
    token().require_scopes(["orders:read"])
    with pytest.raises(InsufficientScopeError) as caught:
        token().require_scopes(["orders:read", "admin", "root"])
    assert caught.value.required == ("orders:read", "admin", "root")
    assert caught.value.missing == ("admin", "root")
    assert caught.value.code == "insufficient_scope"


def test_require_any_of_scopes() -> None:
    with pytest.raises(InsufficientScopeError, match="one of the scopes") as caught:
        token().require_scopes(["admin", "root"], any_of=True)
    assert caught.value.any_of


def test_is_immutable() -> None:
    with pytest.raises(AttributeError):
        token().subject = "other"  # type: ignore[misc]
