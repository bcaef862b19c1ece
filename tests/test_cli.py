"""The ``resource-guard`` command: in-process through ``main(argv)``, and once for real."""

from __future__ import annotations

import importlib
import json
import os
import queue
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from resource_guard import _cli_tokens, cli
from resource_guard._cli_common import format_duration, format_time
from resource_guard._cli_keys import default_key_file, load_or_create_keys
from resource_guard._cli_serve import build_issuer, serve
from resource_guard.testing import FakeIssuer

NOW = 1_800_000_000


@pytest.fixture
def key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "keys" / "issuer.json"
    monkeypatch.setenv("RESOURCE_GUARD_KEY_FILE", str(path))
    return path


@pytest.fixture(scope="module")
def rsa_key_document(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A key file's text with one RS256 key, generated once (RSA keys are slow to make)."""
    path = tmp_path_factory.mktemp("rsa") / "keys.json"
    load_or_create_keys(path)
    return path.read_text()


@pytest.fixture
def existing_key_file(key_file: Path, rsa_key_document: str) -> Path:
    key_file.parent.mkdir(mode=0o700, parents=True)
    key_file.write_text(rsa_key_document)
    key_file.chmod(0o600)
    return key_file


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_cli_tokens, "clock", lambda: NOW)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = cli.main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def one_line_error(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def mint(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    status, out, _ = run(capsys, "token", "mint", *argv)
    assert status == 0
    return out.strip()


def unverified(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


# -- help, version, usage errors -----------------------------------------------------------------

COMMANDS = [
    ((), "issuer"),
    (("issuer",), "serve"),
    (("issuer", "serve"), "--client"),
    (("token",), "inspect"),
    (("token", "mint"), "--lifetime"),
    (("token", "inspect"), "UNVERIFIED"),
    (("verify",), "--allow-insecure-http"),
]


@pytest.mark.parametrize(
    ("command", "mentions"), COMMANDS, ids=[" ".join(c) or "top" for c, _ in COMMANDS]
)
def test_every_command_has_help(
    capsys: pytest.CaptureFixture[str], command: tuple[str, ...], mentions: str
) -> None:
    status, out, err = run(capsys, *command, "--help")
    assert status == 0
    assert out.startswith(f"usage: resource-guard {' '.join(command)}".rstrip())
    assert mentions in out
    assert err == ""


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "--version")
    assert (status, out.strip()) == (0, "resource-guard 0.1.0")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ((), "resource-guard: error: the following arguments are required: COMMAND"),
        (("verify", "x"), "resource-guard verify: error: the following arguments are required"),
        (("token", "mint", "--lifetime", "soon"), "'soon' is not a duration"),
        (("token", "mint", "--claim", "novalue"), "--claim takes NAME=VALUE"),
        (("token", "mint", "--claim", "=x"), "--claim takes NAME=VALUE"),
        (("issuer", "serve", "--port", "70000"), "'70000' is not a port number"),
        (("issuer", "serve", "--port", "http"), "'http' is not a port number"),
        (("issuer", "serve", "--client", "nosecret"), "--client takes ID:SECRET"),
        (("issuer", "serve", "--client", "id::scope"), "--client: the secret is empty"),
        (("verify", "t", "--issuer", "u", "--audience", "a", "--leeway", "x"), "not a number"),
    ],
    ids=[
        "no-command",
        "verify-without-issuer",
        "bad-duration",
        "claim-without-equals",
        "claim-without-name",
        "port-too-large",
        "port-not-a-number",
        "client-without-secret",
        "client-empty-secret",
        "leeway-not-a-number",
    ],
)
def test_usage_errors_are_one_line(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], expected: str
) -> None:
    status, out, err = run(capsys, *argv)
    assert status == 2
    assert out == ""
    line = one_line_error(err)
    assert expected in line
    assert line.endswith("--help)")


def test_python_dash_m_runs_main() -> None:
    """``python -m resource_guard`` runs this main (tests/test_cli.py runs it for real too)."""
    entry = importlib.import_module("resource_guard.__main__")
    assert entry.main is cli.main


# -- the key file ----------------------------------------------------------------------------------


def test_the_key_file_is_created_private_and_reused(key_file: Path) -> None:
    keys, created = load_or_create_keys(key_file)
    assert created
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    again, created_again = load_or_create_keys(key_file)
    assert not created_again
    assert [key.kid for key in again] == [keys[0].kid]
    assert again[0].public_jwk() == keys[0].public_jwk()
    assert list(key_file.parent.iterdir()) == [key_file]  # no temporary file left


@pytest.mark.parametrize("algorithm", ["ES384", "EdDSA", "PS256"])
def test_the_key_file_keeps_other_algorithms(key_file: Path, algorithm: str) -> None:
    load_or_create_keys(key_file, algorithm=algorithm)
    keys, _ = load_or_create_keys(key_file)
    assert keys[-1].alg == algorithm


def test_default_key_file_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert default_key_file({"RESOURCE_GUARD_KEY_FILE": "~/k.json"}) == Path.home() / "k.json"
    assert default_key_file({"XDG_CONFIG_HOME": str(tmp_path)}) == (
        tmp_path / "resource-guard" / "fake-issuer-keys.json"
    )
    monkeypatch.delenv("RESOURCE_GUARD_KEY_FILE", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    assert default_key_file() == Path.home() / ".config/resource-guard/fake-issuer-keys.json"


def write_key_file(path: Path, document: Any, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    path.chmod(mode)


def private_jwk(alg: str = "ES256") -> dict[str, Any]:
    return FakeIssuer(algorithm=alg).current_key.private_jwk()


@pytest.mark.parametrize(
    ("document", "mode", "expected"),
    [
        ({"keys": [private_jwk()]}, 0o644, "mode 0644); run: chmod 600"),
        ({"keys": [private_jwk()]}, 0o620, "readable or writable by others"),
        ("{not json", 0o600, "is not JSON"),
        ({"keys": []}, 0o600, "holds no keys"),
        ([], 0o600, "holds no keys"),
        ({"keys": ["x"]}, 0o600, "key #1 is not a JSON object"),
        ({"keys": [{**private_jwk(), "kid": ""}]}, 0o600, "has no 'kid'"),
        ({"keys": [{**private_jwk(), "alg": "HS256"}]}, 0o600, "has no supported 'alg'"),
        ({"keys": [{**private_jwk(), "kty": "oct"}]}, 0o600, "is not a private RSA, EC or OKP"),
        (
            {"keys": [{k: v for k, v in private_jwk().items() if k != "d"}]},
            0o600,
            "is not a private RSA",
        ),
        ({"keys": [{**private_jwk(), "x": "AAAA"}]}, 0o600, "cannot be loaded"),
        ({"keys": [{**private_jwk(), "alg": "ES384"}]}, 0o600, "can sign ES384"),
        ({"keys": [{**private_jwk("EdDSA"), "alg": "RS256"}]}, 0o600, "can sign RS256"),
        ({"keys": [{**private_jwk("RS256"), "alg": "EdDSA"}]}, 0o600, "can sign EdDSA"),
    ],
    ids=[
        "world-readable",
        "group-writable",
        "not-json",
        "no-keys",
        "not-an-object",
        "key-not-object",
        "no-kid",
        "hmac-alg",
        "symmetric",
        "public-only",
        "damaged",
        "wrong-curve",
        "okp-as-rsa",
        "rsa-as-eddsa",
    ],
)
def test_a_bad_key_file_is_refused_in_one_line(
    capsys: pytest.CaptureFixture[str], key_file: Path, document: Any, mode: int, expected: str
) -> None:
    write_key_file(key_file, document, mode)
    status, out, err = run(capsys, "token", "mint")
    assert (status, out) == (2, "")
    line = one_line_error(err)
    assert expected in line
    assert '"d"' not in err


def test_a_key_file_that_is_a_symlink_or_a_directory_is_refused(
    capsys: pytest.CaptureFixture[str], key_file: Path, tmp_path: Path
) -> None:
    real = tmp_path / "real.json"
    write_key_file(real, {"keys": [private_jwk()]})
    key_file.parent.mkdir(parents=True)
    key_file.symlink_to(real)
    status, _, err = run(capsys, "token", "mint")
    assert status == 2
    assert "cannot read key file" in one_line_error(err)
    key_file.unlink()
    key_file.mkdir()
    status, _, err = run(capsys, "token", "mint")
    assert status == 2
    assert "is not a regular file" in one_line_error(err)


def test_a_key_file_of_another_user_is_refused(
    capsys: pytest.CaptureFixture[str], key_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_key_file(key_file, {"keys": [private_jwk()]})
    monkeypatch.setattr(os, "getuid", lambda: key_file.stat().st_uid + 1)
    status, _, err = run(capsys, "token", "mint")
    assert status == 2
    assert "belongs to another user" in one_line_error(err)


def test_a_key_file_made_meanwhile_by_another_process_wins(
    key_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other, _ = load_or_create_keys(key_file.with_name("other.json"), algorithm="ES256")
    real_link = os.link

    def racing_link(source: Any, target: Any) -> None:
        real_link(key_file.with_name("other.json"), target)  # the other process was first
        real_link(source, target)

    monkeypatch.setattr(os, "link", racing_link)
    keys, created = load_or_create_keys(key_file)
    assert not created
    assert [key.kid for key in keys] == [other[0].kid]
    assert sorted(path.name for path in key_file.parent.iterdir()) == ["issuer.json", "other.json"]


def test_a_key_file_of_another_algorithm_is_refused(key_file: Path) -> None:
    load_or_create_keys(key_file, algorithm="ES256")
    with pytest.raises(Exception, match="signs with ES256, not RS256"):
        load_or_create_keys(key_file, algorithm="RS256")
    with pytest.raises(Exception, match="unsupported algorithm 'HS256'"):
        load_or_create_keys(key_file, algorithm="HS256")


def test_an_unwritable_key_directory_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    status, _, err = run(capsys, "token", "mint", "--key-file", str(blocker / "keys.json"))
    assert status == 2
    assert "cannot create key file" in one_line_error(err)


def test_a_huge_key_file_is_refused(capsys: pytest.CaptureFixture[str], key_file: Path) -> None:
    write_key_file(key_file, " " * (2 << 20))
    status, _, err = run(capsys, "token", "mint")
    assert status == 2
    assert "larger than 1 MiB" in one_line_error(err)


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
        "--lifetime",
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
    claims = unverified(mint(capsys, f"--lifetime={lifetime}"))
    assert claims["exp"] - claims["iat"] == seconds


def test_mint_several_audiences_and_no_subject(
    capsys: pytest.CaptureFixture[str], existing_key_file: Path
) -> None:
    claims = unverified(mint(capsys, "--audience", "a", "--audience", "b", "--subject", ""))
    assert claims["aud"] == ["a", "b"]
    assert "sub" not in claims


def test_mint_refuses_a_bad_issuer(
    capsys: pytest.CaptureFixture[str], existing_key_file: Path
) -> None:
    status, _, err = run(capsys, "token", "mint", "--issuer", "ftp://x")
    assert status == 2
    assert one_line_error(err).startswith("resource-guard: error: --issuer: issuer must be")


# -- token inspect -----------------------------------------------------------------------------


@pytest.fixture
def fake() -> FakeIssuer:
    return FakeIssuer(algorithm="ES256", clock=lambda: NOW)


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


# -- issuer serve --------------------------------------------------------------------------------


class Lines:
    """A text stream whose lines another thread can wait for."""

    def __init__(self) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self._partial = ""

    def write(self, text: str) -> int:
        self._partial += text
        *complete, self._partial = self._partial.split("\n")
        for line in complete:
            self.lines.put(line)
        return len(text)

    def flush(self) -> None:
        pass

    def wait_for(self, prefix: str, timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line.startswith(prefix):
                return line
        raise AssertionError(f"no line starting with {prefix!r} within {timeout} s")


def serve_args(key_file: Path, *argv: str) -> Any:
    return cli.build_parser().parse_args(
        ["issuer", "serve", "--port", "0", "--key-file", str(key_file), *argv]
    )


@pytest.fixture
def serving(existing_key_file: Path) -> Iterator[Any]:
    """Start ``serve`` in a thread; yield a function that takes the options and returns
    the output stream once the banner is printed."""
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def start(*argv: str) -> Lines:
        out = Lines()
        options = serve_args(existing_key_file, *argv)
        thread = threading.Thread(target=serve, args=(options, out, stop))
        thread.start()
        threads.append(thread)
        return out

    yield start
    stop.set()
    for thread in threads:
        thread.join(10)
        assert not thread.is_alive()


def issuer_url(out: Lines) -> str:
    return out.wait_for("  issuer ").split()[-1]


def test_serve_prints_its_urls_and_serves_them(serving: Any, key_file: Path) -> None:
    out = serving(
        "--client",
        "worker:s3cret-value:orders:read,orders:write",
        "--audience",
        "api://orders",
        "--path",
        "/oauth2/default",
    )
    assert out.wait_for("fake issuer listening on 127.0.0.1:")
    issuer = issuer_url(out)
    assert issuer.startswith("http://127.0.0.1:")
    assert issuer.endswith("/oauth2/default")
    discovery = out.wait_for("  discovery ").split()[-1]
    jwks_uri = out.wait_for("  JWKS ").split()[-1]
    token_endpoint = out.wait_for("  token endpoint ").split()[-1]
    assert out.wait_for("  audience ").split()[-1] == "api://orders"
    assert out.wait_for("  client ") == "  client          worker (orders:read orders:write)"
    metadata = httpx.get(discovery).json()
    assert (metadata["issuer"], metadata["jwks_uri"], metadata["token_endpoint"]) == (
        issuer,
        jwks_uri,
        token_endpoint,
    )
    reply = httpx.post(
        token_endpoint,
        data={"grant_type": "client_credentials", "scope": "orders:read"},
        auth=("worker", "s3cret-value"),
    )
    claims = unverified(reply.json()["access_token"])
    assert (claims["iss"], claims["aud"], claims["scope"]) == (
        issuer,
        "api://orders",
        "orders:read",
    )
    keys, _ = load_or_create_keys(key_file)
    assert httpx.get(jwks_uri).json() == {"keys": [keys[0].public_jwk()]}


def test_signal_handlers_are_only_installed_in_the_main_thread() -> None:
    from resource_guard._cli_serve import _stop_on_signals

    seen = []

    def in_thread() -> None:
        with _stop_on_signals(threading.Event()):
            seen.append(signal.getsignal(signal.SIGTERM))

    before = signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join(5)
    assert seen == [before]


def test_clients_keep_their_secret_out_of_reprs() -> None:
    from resource_guard._cli_serve import parse_client

    client = parse_client("worker:hunter2:a,b")
    assert repr(client) == "Client('worker', scopes=('a', 'b'))"


def test_serve_never_prints_client_secrets(serving: Any) -> None:
    out = serving("--client", "worker:very-secret-value")
    out.wait_for("press Ctrl-C")
    seen = []
    while not out.lines.empty():
        seen.append(out.lines.get())
    assert all("very-secret-value" not in line for line in seen)


def test_serve_and_mint_share_the_key_file(
    serving: Any, capsys: pytest.CaptureFixture[str], key_file: Path
) -> None:
    out = serving()
    issuer = issuer_url(out)
    token = mint(capsys, "--issuer", issuer, "--scope", "orders:read")
    status, text, err = run(
        capsys, "verify", token, "--issuer", issuer, "--audience", "api://default"
    )
    assert (status, err) == (0, "")
    assert "  scopes     orders:read" in text


def test_serve_reads_clients_and_audience_from_a_config_file(serving: Any, tmp_path: Path) -> None:
    config = tmp_path / "issuer.json"
    config.write_text(
        json.dumps(
            {
                "audience": ["api://a", "api://b"],
                "clients": [
                    {
                        "client_id": "w",
                        "client_secret": "se:cret",
                        "scopes": "x y",
                        "audience": "api://b",
                        "expires_in": 60,
                    },
                    {"client_id": "v", "client_secret": "s"},
                ],
            }
        )
    )
    out = serving("--config", str(config), "--client", "cli:secret:z")
    issuer = issuer_url(out)
    out.wait_for("  audience ")
    assert out.wait_for("  client ").split()[1:] == ["w", "(x", "y)"]
    assert out.wait_for("  client ").endswith("v (no scopes)")
    assert out.wait_for("  client ").endswith("cli (z)")
    reply = httpx.post(
        f"{issuer}/token", data={"grant_type": "client_credentials"}, auth=("w", "se:cret")
    )
    body = reply.json()
    assert body["expires_in"] == 60
    assert unverified(body["access_token"])["aud"] == "api://b"


def write_config(tmp_path: Path, document: Any) -> Path:
    path = tmp_path / "config.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ("{", "is not valid JSON (line 1)"),
        ([], "must hold an object"),
        ({"port": 1}, "unknown field(s) port"),
        ({"clients": {}}, "clients must be a list"),
        ({"clients": ["w:s"]}, "clients[0] must be an object"),
        ({"clients": [{"client_id": "w", "client_secret": "s", "x": 1}]}, "unknown field(s) x"),
        ({"clients": [{"client_secret": "s"}]}, "client_id must be a non-empty string"),
        ({"clients": [{"client_id": "w"}]}, "(w): client_secret must be a non-empty string"),
        (
            {"clients": [{"client_id": "w", "client_secret": "s", "expires_in": 0}]},
            "expires_in must be a positive whole number",
        ),
        (
            {"clients": [{"client_id": "w", "client_secret": "s", "scopes": [1]}]},
            "scopes must be a non-empty string or list of strings",
        ),
        ({"audience": []}, "audience must be a non-empty string or list"),
    ],
    ids=[
        "not-json",
        "not-object",
        "unknown-field",
        "clients-not-list",
        "client-not-object",
        "client-unknown-field",
        "no-client-id",
        "no-secret",
        "bad-expires-in",
        "bad-scopes",
        "empty-audience",
    ],
)
def test_a_bad_config_file_is_one_line(
    capsys: pytest.CaptureFixture[str],
    key_file: Path,
    tmp_path: Path,
    document: Any,
    expected: str,
) -> None:
    config = write_config(tmp_path, document)
    status, _, err = run(capsys, "issuer", "serve", "--port", "0", "--config", str(config))
    assert status == 2
    line = one_line_error(err)
    assert expected in line
    assert '"s"' not in line


def test_a_missing_config_file_is_one_line(
    capsys: pytest.CaptureFixture[str], key_file: Path, tmp_path: Path
) -> None:
    status, _, err = run(capsys, "issuer", "serve", "--config", str(tmp_path / "nope.json"))
    assert status == 2
    assert "cannot read config file" in one_line_error(err)


@pytest.mark.parametrize("path", ["oauth2", "/a?b=1", "/"], ids=["relative", "query", "root"])
def test_a_bad_issuer_path_is_refused(
    capsys: pytest.CaptureFixture[str], key_file: Path, path: str
) -> None:
    status, _, err = run(capsys, "issuer", "serve", "--path", path)
    assert status == 2
    assert "--path must start with '/'" in one_line_error(err)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_a_port_in_use_is_one_line(
    capsys: pytest.CaptureFixture[str], existing_key_file: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status, _, err = run(capsys, "issuer", "serve", "--port", str(port))
    assert status == 2
    assert f"cannot listen on 127.0.0.1:{port}" in one_line_error(err)


def test_build_issuer_with_defaults(key_file: Path) -> None:
    fake, clients, created = build_issuer(serve_args(key_file))
    assert (fake.issuer, fake.audience, clients, created) == (
        "http://127.0.0.1",
        "api://default",
        [],
        True,
    )


def test_main_serves_until_sigterm(
    capsys: pytest.CaptureFixture[str], existing_key_file: Path
) -> None:
    """The real entry point: signal handlers stop the server cleanly and are restored."""
    port = free_port()
    previous = signal.getsignal(signal.SIGTERM)
    served: list[int] = []

    def stop_when_up() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                served.append(httpx.get(f"http://127.0.0.1:{port}/jwks.json").status_code)
            except httpx.TransportError:
                time.sleep(0.05)
                continue
            os.kill(os.getpid(), signal.SIGTERM)  # our handler is installed before serving
            return

    stopper = threading.Thread(target=stop_when_up)
    stopper.start()
    status = cli.main(["issuer", "serve", "--port", str(port)])
    stopper.join(10)
    out = capsys.readouterr().out
    assert (status, served) == (0, [200])
    assert out.rstrip().endswith("fake issuer stopped")
    assert signal.getsignal(signal.SIGTERM) is previous


def test_an_unexpected_error_is_still_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, key_file: Path
) -> None:
    def broken(*args: Any) -> int:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(cli, "mint_token", broken)
    status, _, err = run(capsys, "token", "mint")
    assert status == 70
    assert one_line_error(err) == "resource-guard: unexpected error: ZeroDivisionError: a bug"


def test_ctrl_c_outside_serve_exits_130(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, key_file: Path
) -> None:
    def interrupted(*args: Any) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "mint_token", interrupted)
    status, _, err = run(capsys, "token", "mint")
    assert (status, err) == (130, "resource-guard: interrupted\n")


# -- for real: a subprocess serving, another verifying over loopback ------------------------------


def test_serve_and_verify_as_real_processes(
    existing_key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {**os.environ, "RESOURCE_GUARD_KEY_FILE": str(existing_key_file)}
    command = [sys.executable, "-m", "resource_guard"]
    with subprocess.Popen(
        [*command, "issuer", "serve", "--port", "0", "--audience", "api://orders"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as server:
        errors = serve_and_verify(server, command, env, capsys)
    assert server.returncode == 0
    assert errors == ""


def serve_and_verify(
    server: subprocess.Popen[str],
    command: list[str],
    env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> str:
    """Mint tokens (in-process, same key file) and verify them over loopback against the
    running ``server`` (in another process, and in this one); stop it; return its stderr."""
    try:
        lines: queue.Queue[str] = queue.Queue()

        def read() -> None:
            for line in server.stdout or ():
                lines.put(line)

        threading.Thread(target=read, daemon=True).start()
        issuer = ""
        deadline = time.monotonic() + 30
        while not issuer and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line.startswith("  issuer "):
                issuer = line.split()[-1]
        assert issuer.startswith("http://127.0.0.1:"), "the server printed no issuer URL"

        def cli_run(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [*command, *argv],
                input=stdin,
                capture_output=True,
                text=True,
                env=env,
                timeout=60,
                check=False,
            )

        token = mint(capsys, "--issuer", issuer, "--audience", "api://orders")
        verified = cli_run(
            "verify", "-", "--issuer", issuer, "--audience", "api://orders", stdin=token + "\n"
        )
        assert verified.returncode == 0, verified.stderr
        assert verified.stdout.startswith("valid token")
        wrong = mint(capsys, "--issuer", issuer, "--audience", "api://elsewhere")
        status, _, err = run(
            capsys, "verify", wrong, "--issuer", issuer, "--audience", "api://orders"
        )
        assert status == 1
        assert err.startswith("resource-guard: error: invalid token (invalid_audience)")
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        finally:
            if server.poll() is None:  # pragma: no cover - only if SIGTERM was ignored
                server.kill()
                server.wait(timeout=10)
    assert server.stderr is not None
    return server.stderr.read()
