"""``verify`` (``resource_guard.cli._verify``)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from resource_guard.testing import FakeIssuer

from ._harness import FAKE_ISSUER, one_line_error, run

pytestmark = FAKE_ISSUER

# -- verify ----------------------------------------------------------------------------------------


@pytest.fixture
def served(fake: FakeIssuer) -> Iterator[FakeIssuer]:
    fake.clock = time.time
    with fake.serve():
        yield fake


def verify(capsys: pytest.CaptureFixture[str], token: str, fake: FakeIssuer, *extra: str) -> Any:
    return run(
        capsys, "verify", token, "--issuer", fake.issuer, "--audience", "api://default", *extra
    )


def test_verify_a_valid_token(capsys: pytest.CaptureFixture[str], served: FakeIssuer) -> None:
    token = served.mint("alice", scopes=["b", "a"], client_id="web")
    status, out, err = verify(capsys, token, served)
    assert (status, err) == (0, "")
    assert out.splitlines()[:7] == [
        "valid token",
        "  subject    alice",
        "  client id  web",
        "  scopes     a b",
        "  audience   api://default",
        f"  issuer     {served.issuer}",
        f"  key id     {served.current_key.kid}",
    ]
    assert "(in 4 min 5" in out.splitlines()[7]


def test_verify_as_json(capsys: pytest.CaptureFixture[str], served: FakeIssuer) -> None:
    status, out, _ = verify(capsys, served.mint(kid=None), served, "--json")
    document = json.loads(out)
    assert status == 0
    assert (document["valid"], document["subject"], document["key_id"]) == (
        True,
        "user-123",
        served.current_key.kid,
    )
    status, out, err = verify(capsys, served.mint_expired(), served, "--json")
    assert (status, err) == (1, "")
    assert json.loads(out) == {
        "valid": False,
        "error": "token_expired",
        "message": "'exp' claim has passed: the token expired",
    }


@pytest.mark.parametrize(
    ("make", "extra", "expected"),
    [
        (lambda f: f.mint_expired(), (), "invalid token (token_expired)"),
        (lambda f: f.mint(audience="api://other"), (), "invalid token (invalid_audience)"),
        (lambda f: f.mint(key=f.generate_key()), (), "invalid token (unknown_key)"),
        (lambda f: f.mint(), ("--algorithm", "RS256"), "invalid token (unsupported_algorithm)"),
        (lambda f: "not-a-token", (), "invalid token (malformed_token)"),
        (
            lambda f: f.mint(scopes=["a"]),
            ("--require-scope", "a", "--require-scope", "b"),
            "invalid token (insufficient_scope): the token lacks the scopes: b",
        ),
    ],
    ids=["expired", "audience", "forged", "algorithm", "malformed", "scope"],
)
def test_verify_refuses_with_the_reason(
    capsys: pytest.CaptureFixture[str],
    served: FakeIssuer,
    make: Any,
    extra: tuple[str, ...],
    expected: str,
) -> None:
    status, out, err = verify(capsys, make(served), served, *extra)
    assert (status, out) == (1, "")
    assert one_line_error(err).startswith(f"resource-guard: error: {expected}")


def test_verify_splits_list_options_like_every_command(
    capsys: pytest.CaptureFixture[str], served: FakeIssuer
) -> None:
    """``--audience a,b`` names two audiences (before, one audience spelled "a,b")."""
    token = served.mint(scopes=["a"])
    argv = ("verify", token, "--issuer", served.issuer)
    status, _, err = run(capsys, *argv, "--audience", "api://other,api://default")
    assert (status, err) == (0, "")
    status, _, err = run(capsys, *argv, "--audience", "api://default", "--algorithm", "RS256 ES256")
    assert (status, err) == (0, "")
    status, _, err = run(capsys, *argv, "--audience", "api://default", "--require-scope", "a,b")
    assert status == 1
    assert one_line_error(err).endswith("the token lacks the scopes: b")


def test_verify_with_scope_claims_and_a_jwks_uri(
    capsys: pytest.CaptureFixture[str], served: FakeIssuer
) -> None:
    token = served.mint(claims={"permissions": ["p:read"]})
    status, out, _ = verify(
        capsys, token, served, "--scope-claim", "permissions", "--jwks-uri", served.jwks_uri
    )
    assert status == 0
    assert "  scopes     p:read" in out
    assert served.counts["discovery"] == 0


def test_verify_says_when_keys_cannot_be_had(
    capsys: pytest.CaptureFixture[str], served: FakeIssuer
) -> None:
    served.fault("status", status=503)
    status, out, err = verify(capsys, served.mint(), served, "--timeout", "2")
    assert (status, out) == (3, "")
    assert one_line_error(err).startswith("resource-guard: error: cannot verify: no usable")


def test_verify_logs_with_verbose(capsys: pytest.CaptureFixture[str], served: FakeIssuer) -> None:
    import logging

    served.fault("status", status=503)
    logger = logging.getLogger("resource_guard")
    level, handlers = logger.level, list(logger.handlers)
    status, _, err = run(
        capsys, "-v", "verify", served.mint(), "--issuer", served.issuer, "--audience", "x"
    )
    assert status == 3
    assert "resource-guard: ERROR resource_guard.jwks: JWKS fetch failed" in err
    assert (logger.level, logger.handlers) == (level, handlers)  # restored
    status, _, err = run(
        capsys, "-vv", "verify", served.mint(), "--issuer", served.issuer, "--audience", "x"
    )
    assert "resource-guard: ERROR" in err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (("--issuer", "http://idp.example.com", "--audience", "a"), "must use https"),
        (("--issuer", "https://idp.test", "--audience", "a", "--algorithm", "HS256"), "HMAC"),
        (("--issuer", "https://idp.test", "--audience", "a", "--timeout", "0"), "timeout"),
    ],
    ids=["plain-http", "hmac", "timeout"],
)
def test_verify_configuration_errors_are_one_line(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], expected: str
) -> None:
    status, _, err = run(capsys, "verify", "a.b.c", *argv)
    assert status == 2
    assert expected in one_line_error(err)


def test_allow_insecure_http_reaches_the_verifier(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(
        capsys,
        "verify",
        "a.b.c",
        "--issuer",
        "http://idp.example.com",
        "--audience",
        "a",
        "--allow-insecure-http",
    )
    assert status == 1  # configuration accepted; the token is malformed
    assert "malformed_token" in err
