"""``token mint`` and ``token inspect`` (``resource_guard.cli._token``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jwt
import pytest

from resource_guard.cli._common import format_duration, format_time
from resource_guard.cli._keys import load_or_create_keys
from resource_guard.testing import FakeIssuer

from ._harness import FAKE_ISSUER, NOW, mint, one_line_error, run, unverified

pytestmark = FAKE_ISSUER

# -- token mint --------------------------------------------------------------------------------


def test_mint_prints_only_a_token_signed_with_the_key_file(
    capsys: pytest.CaptureFixture[str], key_file: Path
) -> None:
    status, out, err = run(
        capsys,
        "token",
        "mint",
        "--subject",
        "alice",
        "--scope",
        "orders:read orders:write",
        "--scope",
        "admin,orders:read",
        "--audience",
        "api://orders",
        "--expires-in",
        "15m",
        "--claim",
        "tenant=acme",
        "--claim",
        'roles=["a", "b"]',
        "--claim",
        "level=5",
        "--claim",
        "note=not json {",
        "--client-id",
        "web",
    )
    assert status == 0
    assert err == f"resource-guard: created key file {key_file}\n"
    token = out.strip()
    assert out == token + "\n"
    keys, _ = load_or_create_keys(key_file)
    claims = jwt.decode(
        token,
        keys[0].private_key.public_key(),
        algorithms=["RS256"],
        audience="api://orders",
        issuer="http://127.0.0.1:9400",
    )
    assert claims["sub"] == "alice"
    assert claims["scope"] == "orders:read orders:write admin"
    assert claims["exp"] - claims["iat"] == 900
    assert (claims["tenant"], claims["roles"], claims["level"]) == ("acme", ["a", "b"], 5)
    assert claims["note"] == "not json {"
    assert claims["client_id"] == "web"
    assert jwt.get_unverified_header(token)["kid"] == keys[0].kid
    assert mint(capsys)
    assert capsys.readouterr().err == ""  # the file exists now: no note


@pytest.mark.parametrize(
    ("lifetime", "seconds"),
    [("300", 300), ("90s", 90), ("2h", 7200), ("1d", 86400), ("-1h", -3600)],
)
def test_mint_lifetimes(
    capsys: pytest.CaptureFixture[str], existing_key_file: Path, lifetime: str, seconds: int
) -> None:
    claims = unverified(mint(capsys, f"--expires-in={lifetime}"))
    assert claims["exp"] - claims["iat"] == seconds


def test_mint_several_audiences_and_no_subject(
    capsys: pytest.CaptureFixture[str], existing_key_file: Path
) -> None:
    claims = unverified(mint(capsys, "--audience", "a", "--audience", "b", "--subject", ""))
    assert claims["aud"] == ["a", "b"]
    assert "sub" not in claims


def test_lifetime_is_a_deprecated_spelling_of_expires_in(
    capsys: pytest.CaptureFixture[str], existing_key_file: Path
) -> None:
    """``--lifetime`` still works, with a one-line notice on stderr; the token stays alone
    on stdout."""
    status, out, err = run(capsys, "token", "mint", "--lifetime", "15m")
    claims = unverified(out.strip())
    assert (status, claims["exp"] - claims["iat"], len(out.splitlines())) == (0, 900, 1)
    assert err == (
        "resource-guard: warning: --lifetime is deprecated, use --expires-in (same values)\n"
    )
    status, out, err = run(capsys, "token", "mint", "--lifetime=-1h", "--lifetime=2h")
    claims = unverified(out.strip())
    assert (status, claims["exp"] - claims["iat"], len(err.splitlines())) == (0, 7200, 1)
    status, _, err = run(capsys, "token", "mint", "--expires-in", "90s")
    assert (status, err) == (0, "")
    status, out, _ = run(capsys, "token", "mint", "--help")
    assert "--expires-in DURATION, --lifetime DURATION" in out


def test_mint_splits_audiences_and_scopes_like_every_list_option(
    capsys: pytest.CaptureFixture[str], existing_key_file: Path
) -> None:
    claims = unverified(mint(capsys, "--audience", "a,b", "--audience", "b c", "--scope", "x,y"))
    assert (claims["aud"], claims["scope"]) == (["a", "b", "c"], "x y")


def test_mint_refuses_a_bad_issuer(
    capsys: pytest.CaptureFixture[str], existing_key_file: Path
) -> None:
    status, _, err = run(capsys, "token", "mint", "--issuer", "ftp://x")
    assert status == 2
    assert one_line_error(err).startswith("resource-guard: error: --issuer: issuer must be")


# -- token inspect -----------------------------------------------------------------------------


@pytest.mark.usefixtures("frozen")
def test_inspect_marks_everything_unverified_and_shows_dates(
    capsys: pytest.CaptureFixture[str], fake: FakeIssuer
) -> None:
    token = fake.mint("alice", scopes=["a"], claims={"nbf": NOW + 60, "auth_time": NOW - 7200})
    status, out, _ = run(capsys, "token", "inspect", token)
    assert status == 0
    assert out.startswith("UNVERIFIED: ")
    assert '"sub": "alice"' in out
    assert '"alg": "ES256"' in out
    assert "  iat       2027-01-15 08:00:00 UTC (now)" in out
    assert "  nbf       2027-01-15 08:01:00 UTC (in 1 min)" in out
    assert "  auth_time 2027-01-15 06:00:00 UTC (2 h ago)" in out
    assert "  exp       2027-01-15 08:05:00 UTC (expires in 5 min)" in out


@pytest.mark.usefixtures("frozen")
def test_inspect_reads_stdin_and_drops_a_bearer_prefix(
    capsys: pytest.CaptureFixture[str], fake: FakeIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    token = fake.mint_expired(ago=3 * 3600 + 120)
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"  Bearer {token}\n"))
    status, out, _ = run(capsys, "token", "inspect", "-")
    assert status == 0
    assert "(expired 3 h 2 min ago)" in out


@pytest.mark.usefixtures("frozen")
def test_inspect_as_json(capsys: pytest.CaptureFixture[str], fake: FakeIssuer) -> None:
    token = fake.mint(omit=("exp",), claims={"iat": "yesterday"})
    status, out, _ = run(capsys, "token", "inspect", "--json", token)
    document = json.loads(out)
    assert status == 0
    assert document["verified"] is False
    assert document["header"]["kid"] == fake.current_key.kid
    assert document["claims"]["iat"] == "yesterday"
    status, text, _ = run(capsys, "token", "inspect", token)
    assert "no 'exp' claim" in text
    assert "times:" not in text  # a string iat is not a time


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("abc", "not a JWT: expected 3 dot-separated parts, found 1"),
        ("a.b.c.d.e", "encrypted token (JWE)"),
        ("!!!.e30.x", "not a JWT: the header is not base64url-encoded JSON"),
        ("W10.e30.x", "not a JWT: the header is not a JSON object"),
        ("e30.bm90IGpzb24.x", "not a JWT: the payload is not base64url-encoded JSON"),
        ("Bearer ", "no token given"),
    ],
    ids=["one-part", "jwe", "header-not-base64", "header-a-list", "payload-not-json", "empty"],
)
def test_inspect_refuses_what_is_not_a_jwt(
    capsys: pytest.CaptureFixture[str], token: str, expected: str
) -> None:
    status, out, err = run(capsys, "token", "inspect", token)
    assert out == ""
    assert expected in one_line_error(err)
    assert status == (2 if expected == "no token given" else 1)


def test_inspect_refuses_an_endless_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO("a" * ((1 << 20) + 1)))
    status, _, err = run(capsys, "token", "inspect", "-")
    assert status == 1
    assert "larger than 1 MiB" in one_line_error(err)


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (0, "0 s"),
        (59, "59 s"),
        (60, "1 min"),
        (61, "1 min 1 s"),
        (3600, "1 h"),
        (3660, "1 h 1 min"),
        (86400, "1 d"),
        (90000, "1 d 1 h"),
        (-61, "1 min 1 s"),
    ],
)
def test_durations_read_naturally(seconds: float, words: str) -> None:
    assert format_duration(seconds) == words


def test_times_that_cannot_be_dates_are_shown_raw() -> None:
    assert format_time(1e300, NOW) == "1e+300 (not a representable time)"
