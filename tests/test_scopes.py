"""Scope names: the RFC 6749 §3.3 grammar, shared by the verifier, route checks and client."""

from __future__ import annotations

import pytest

from resource_guard import TokenVerifier
from resource_guard._scopes import check_scope_names, split_scope
from resource_guard.testing import FakeIssuer


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("a b", ["a", "b"], id="single-spaces"),
        pytest.param("  a   b  ", ["a", "b"], id="runs-and-ends"),
        pytest.param("", [], id="empty"),
        pytest.param("orders:read https://api/x", ["orders:read", "https://api/x"], id="urls"),
        pytest.param("a\tb c", ["c"], id="tab-joined-piece-dropped"),
        pytest.param("a\nb", [], id="newline"),
        pytest.param("a\u3000b", [], id="ideographic-space"),
        pytest.param("caf\u00e9 ok", ["ok"], id="non-ascii"),
    ],
)
def test_split_scope(value: str, expected: list[str]) -> None:
    assert split_scope(value) == expected


def test_check_scope_names_keeps_order_and_drops_repeats() -> None:
    assert check_scope_names(["a", "b:c", "a"]) == ("a", "b:c")


@pytest.mark.parametrize(
    "scope",
    ["", "a b", 'a"b', "a\\b", "a\tb", "caf\u00e9", "a\n"],
    ids=["empty", "space", "quote", "backslash", "tab", "non-ascii", "newline"],
)
def test_check_scope_names_refuses_words_outside_the_grammar(scope: str) -> None:
    with pytest.raises(ValueError, match="invalid scope name"):
        check_scope_names([scope])


def test_check_scope_names_refuses_non_strings() -> None:
    with pytest.raises(TypeError, match="must be strings"):
        check_scope_names([b"a"])


async def test_a_tab_separated_scope_claim_grants_nothing() -> None:
    """A token whose scope reads "read<TAB>write" grants neither read nor write."""
    fake = FakeIssuer(audience="api://orders")
    token = fake.mint("u", claims={"scope": "read\twrite admin"})
    async with (
        fake.async_client() as client,
        TokenVerifier(fake.issuer, "api://orders", http_client=client) as verifier,
    ):
        verified = await verifier.verify(token)
    assert verified.scopes == {"admin"}
    assert not verified.has_scopes("read")
