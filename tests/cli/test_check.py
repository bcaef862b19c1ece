"""``check`` (``resource_guard.cli._check``) and the diagnosis behind it
(``resource_guard.diagnose``): against the fake issuer over loopback HTTP, in-process
where simpler."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest

from resource_guard.diagnose import FAIL, OK, WARN, Diagnosis, diagnose, issuer_hint
from resource_guard.testing import FakeIssuer

from ._harness import one_line_error, run

AUDIENCE = "api://default"


@pytest.fixture
def idp() -> Iterator[FakeIssuer]:
    """An ES256 fake issuer served on 127.0.0.1 (real time: the clock skew is measured)."""
    issuer = FakeIssuer(algorithm="ES256")
    with issuer.serve():
        yield issuer


def check(capsys: pytest.CaptureFixture[str], idp: FakeIssuer, *extra: str) -> Any:
    return run(capsys, "check", "--issuer", idp.issuer, "--audience", AUDIENCE, *extra)


def findings(out: str) -> dict[str, dict[str, str]]:
    """The --json findings by check name (the last one of a name wins)."""
    return {f["check"]: f for f in json.loads(out)["findings"]}


def signature(token: str) -> str:
    return token.rsplit(".", 1)[1]


# -- the issuer ------------------------------------------------------------------------------------


def test_all_ok(capsys: pytest.CaptureFixture[str], idp: FakeIssuer) -> None:
    status, out, err = check(capsys, idp)
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"checking issuer {idp.issuer} for audience {AUDIENCE}"
    assert f"  ok    discovery   {idp.discovery_url}" in lines
    assert f"  ok    issuer      {idp.issuer}" in lines
    assert f"  ok    jwks_uri    {idp.jwks_uri}" in lines
    assert f"  ok    key kid={idp.current_key.kid!r} EC P-256, alg ES256" in lines
    assert "  ok    jwks        1 usable of 1" in lines
    assert "  ok    algorithms  the keys verify: ES256" in lines
    assert any(line.startswith("  ok    clock skew  this clock is about") for line in lines)
    assert lines[-1] == "result: ok (0 failed, 0 warnings; exit status 0)"


def test_as_json(capsys: pytest.CaptureFixture[str], idp: FakeIssuer) -> None:
    status, out, _ = check(capsys, idp, "--json")
    document = json.loads(out)
    assert (status, document["ok"], document["exit_status"]) == (0, True, 0)
    assert {f["status"] for f in document["findings"]} == {OK}
    assert set(document["findings"][0]) == {"status", "check", "expected", "actual", "hint", "area"}


@pytest.mark.parametrize(
    ("configured", "hint"),
    [
        ("{origin}/", "trailing slash"),
        ("http://localhost:{port}", "localhost and 127.0.0.1 are different issuers"),
    ],
    ids=["trailing-slash", "localhost"],
)
def test_issuer_mismatch_names_the_cause(
    capsys: pytest.CaptureFixture[str], idp: FakeIssuer, configured: str, hint: str
) -> None:
    issuer = configured.format(origin=idp.issuer, port=idp.port)
    status, out, _ = run(capsys, "check", "--issuer", issuer, "--audience", AUDIENCE, "--json")
    found = findings(out)["issuer"]
    assert status == 3
    assert (found["status"], found["expected"], found["actual"]) == (
        FAIL,
        repr(issuer),
        repr(idp.issuer),
    )
    assert found["hint"].startswith(hint)
    assert f"configure {idp.issuer!r}" in found["hint"]


def test_issuer_hints() -> None:
    assert issuer_hint("https://idp/", "https://idp").startswith("trailing slash")
    assert issuer_hint("http://idp", "https://idp").startswith("http vs https")
    assert issuer_hint("http://127.0.0.1:9", "http://localhost:9").startswith("localhost")
    assert issuer_hint("https://a", "https://b").startswith("another host")
    assert issuer_hint("https://a/x", "https://a/y").startswith("iss is compared")
    assert "not a string" in issuer_hint("https://a", 5)


def test_skipped_keys_are_listed_with_their_reason(
    capsys: pytest.CaptureFixture[str], idp: FakeIssuer
) -> None:
    idp.publish_raw_jwk({"kty": "oct", "kid": "shared", "k": "c2VjcmV0"})
    idp.publish_raw_jwk({"kty": "RSA", "kid": "small", "n": "AQAB", "e": "AQAB"})
    idp.publish_raw_jwk({"kty": "EC", "kid": "enc", "use": "enc", "crv": "P-256"})
    status, out, _ = check(capsys, idp)
    assert status == 0  # one usable key is enough; the skipped ones are warnings
    assert "  WARN  key kid='shared' skipped: symmetric keys are never used to verify" in out
    assert "  WARN  key kid='small' skipped: RSA key of 17 bits is under 2048" in out
    assert "  WARN  key kid='enc' skipped: 'use' is 'enc', not 'sig'" in out
    assert "  ok    jwks        1 usable of 4" in out
    assert "result: ok (0 failed, 3 warnings; exit status 0)" in out


def test_no_usable_key_fails(capsys: pytest.CaptureFixture[str], idp: FakeIssuer) -> None:
    idp.remove_key(idp.current_key.kid)
    idp.publish_raw_jwk({"kty": "oct", "kid": "shared", "k": "c2VjcmV0"})
    status, out, _ = check(capsys, idp, "--json")
    assert status == 3
    assert findings(out)["jwks"]["status"] == FAIL
    assert findings(out)["jwks"]["actual"] == "0 usable of 1"


def test_algorithms_offered_vs_allowed(capsys: pytest.CaptureFixture[str], idp: FakeIssuer) -> None:
    status, out, _ = check(capsys, idp, "--algorithm", "RS256", "--json")
    found = findings(out)["algorithms"]
    assert (status, found["status"]) == (3, FAIL)
    assert (found["expected"], found["actual"]) == ("allowed: RS256", "the keys verify: ES256")


def test_discovery_down(capsys: pytest.CaptureFixture[str], idp: FakeIssuer) -> None:
    idp.fault("status", endpoint="discovery", status=503)
    idp.fault("status", endpoint="oauth_metadata", status=404)
    status, out, err = check(capsys, idp)
    assert (status, err) == (3, "")
    assert "  FAIL  discovery   " in out
    assert f"{idp.discovery_url}: HTTP 503" in out
    assert "HTTP 404" in out
    assert "configure jwks_uri (--jwks-uri)" in out
    assert out.splitlines()[-1].startswith("result: the configuration or the issuer is wrong")


def test_jwks_uri_skips_discovery(capsys: pytest.CaptureFixture[str], idp: FakeIssuer) -> None:
    idp.fault("status", endpoint="discovery", status=503)
    status, out, _ = check(capsys, idp, "--jwks-uri", idp.jwks_uri, "--json")
    assert status == 0
    assert findings(out)["discovery"]["actual"] == idp.jwks_uri


def test_jwks_down(capsys: pytest.CaptureFixture[str], idp: FakeIssuer) -> None:
    idp.fault("garbage")
    status, out, _ = check(capsys, idp, "--json", "--token", idp.mint())
    found = findings(out)
    assert status == 3
    assert (found["jwks"]["status"], found["jwks"]["actual"]) == (FAIL, "the body is not JSON")
    assert found["signature"]["status"] == WARN  # not checked without keys


# -- the token -------------------------------------------------------------------------------------


def test_a_good_token(capsys: pytest.CaptureFixture[str], idp: FakeIssuer) -> None:
    token = idp.mint("alice", scopes=["a"])
    status, out, _ = check(capsys, idp, "--token", token)
    assert status == 0
    assert signature(token) not in out
    lines = out.splitlines()
    assert "token (header and claims read unverified; the signature is not shown)" in lines
    assert "  ok    signature   verifies" in lines
    assert "  ok    verdict     accepted" in lines
    assert f"  ok    aud         {AUDIENCE}" in lines
    assert f"                    expected: one of {AUDIENCE}" in lines


@pytest.mark.parametrize(
    ("make", "check_name", "expected", "actual", "code"),
    [
        (
            lambda f: f.mint_expired(),
            "exp",
            "later than now - 30 s leeway",
            "s ago)",
            "token_expired",
        ),
        (
            lambda f: f.mint(audience="api://other"),
            "aud",
            f"one of {AUDIENCE}",
            "api://other",
            "invalid_audience",
        ),
        (
            lambda f: f.mint(key=f.generate_key()),
            "kid",
            "a published key that fits the alg",
            "no published key has kid",
            "unknown_key",
        ),
    ],
    ids=["expired", "audience", "unknown-kid"],
)
def test_a_refused_token_shows_expected_and_actual(
    capsys: pytest.CaptureFixture[str],
    idp: FakeIssuer,
    make: Any,
    check_name: str,
    expected: str,
    actual: str,
    code: str,
) -> None:
    token = make(idp)
    status, out, err = check(capsys, idp, "--token", token, "--json")
    found = findings(out)
    assert (status, err) == (1, "")
    assert found[check_name]["status"] == FAIL
    assert found[check_name]["area"] == "token"
    assert found[check_name]["expected"].startswith(expected)
    assert actual in found[check_name]["actual"]
    assert found["verdict"]["actual"].startswith(f"refused ({code})")
    status, text, _ = check(capsys, idp, "--token", token)
    assert status == 1
    assert signature(token) not in out + text
    assert text.splitlines()[-1].startswith("result: the token is refused")


def test_a_token_from_stdin(
    capsys: pytest.CaptureFixture[str], idp: FakeIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = idp.mint(claims={"iss": idp.issuer + "/"})
    monkeypatch.setattr("sys.stdin", io.StringIO(f"Bearer {token}\n"))
    status, out, _ = check(capsys, idp, "--token", "-", "--json")
    found = findings(out)
    assert status == 1
    assert found["iss"]["status"] == FAIL
    assert found["iss"]["hint"].startswith("trailing slash")
    assert found["signature"]["actual"] == "verifies"
    assert signature(token) not in out


def test_a_forged_signature_and_a_malformed_token(
    capsys: pytest.CaptureFixture[str], idp: FakeIssuer
) -> None:
    token = idp.mint()
    head, _, sig = token.rpartition(".")
    forged = f"{head}.{'A' if sig[0] != 'A' else 'B'}{sig[1:]}"
    status, out, _ = check(capsys, idp, "--token", forged, "--json")
    assert (status, findings(out)["signature"]["status"]) == (1, FAIL)
    assert signature(forged) not in out
    status, out, _ = check(capsys, idp, "--token", "not-a-token", "--json")
    assert (status, findings(out)["format"]["status"]) == (1, FAIL)


# -- --env and usage -------------------------------------------------------------------------------


def test_env_reads_what_from_env_reads(
    capsys: pytest.CaptureFixture[str], idp: FakeIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in idp.environ().items():
        monkeypatch.setenv(name, value)
    status, out, _ = run(capsys, "check", "--env", "--json", "--token", idp.mint())
    assert status == 0
    assert findings(out)["discovery"]["actual"] == idp.jwks_uri  # RESOURCE_GUARD_JWKS_URI
    monkeypatch.setenv("RESOURCE_GUARD_ALGORITHMS", "RS256")
    status, out, _ = run(capsys, "check", "--env", "--json")
    assert (status, findings(out)["algorithms"]["status"]) == (3, FAIL)
    status, _, _ = run(capsys, "check", "--env", "--algorithm", "ES256")  # the command line wins
    assert status == 0
    monkeypatch.setenv("RESOURCE_GUARD_LEEWAY", "soon")
    status, _, err = run(capsys, "check", "--env")
    assert status == 2
    assert "RESOURCE_GUARD_LEEWAY" in one_line_error(err)


def test_usage_errors(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RESOURCE_GUARD_ISSUER", raising=False)
    status, _, err = run(capsys, "check", "--audience", AUDIENCE)
    assert status == 2
    assert "--issuer and --audience are required" in one_line_error(err)
    status, _, err = run(capsys, "check", "--issuer", "ftp://x", "--audience", AUDIENCE)
    assert status == 2
    assert "https" in one_line_error(err)
    status, _, err = run(capsys, "check", "--env")
    assert status == 2
    assert "RESOURCE_GUARD_ISSUER" in one_line_error(err)


# -- the diagnosis in-process ----------------------------------------------------------------------


async def test_diagnose_in_process() -> None:
    issuer = FakeIssuer(algorithm="ES256")
    async with issuer.async_client() as client:
        result = await diagnose(
            {"issuer": issuer.issuer, "audience": AUDIENCE}, issuer.mint(), http_client=client
        )
    assert isinstance(result, Diagnosis)
    by_name = {f.check: f for f in result.findings}
    # The in-process transport sends no Date header: the skew is not measured (a warning).
    assert by_name["clock skew"].status == WARN
    assert not result.failed("idp")
    assert not result.failed("token")
    assert by_name["verdict"].status == OK
