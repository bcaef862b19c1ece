"""``check`` (``resource_guard.cli._check``) and the diagnosis behind it
(``resource_guard.diagnose``): against the fake issuer over loopback HTTP, in-process
where simpler."""

from __future__ import annotations

import base64
import io
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from resource_guard._keyset import MAX_JWKS_KEYS
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


def with_header(token: str, **header: object) -> str:
    """``token`` with its header replaced (as a buggy or hostile issuer might send it)."""
    encoded = base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=").decode()
    return encoded + token[token.index(".") :]


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


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


@pytest.mark.parametrize(
    ("jwks_uri", "reason"),
    [("http://idp.example.com/jwks.json", "https"), (None, "jwks_uri")],
    ids=["plain-http", "missing"],
)
def test_discovered_jwks_uri_unusable(
    capsys: pytest.CaptureFixture[str], idp: FakeIssuer, jwks_uri: str | None, reason: str
) -> None:
    idp.metadata_overrides["jwks_uri"] = jwks_uri  # None: the document has no jwks_uri
    status, out, _ = check(capsys, idp, "--json", "--token", idp.mint())
    found = findings(out)
    assert status == 3
    assert (found["discovery"]["status"], found["issuer"]["status"]) == (OK, OK)
    assert found["jwks_uri"]["status"] == FAIL
    assert found["jwks_uri"]["expected"] == "an https (or loopback) URL"
    assert reason in found["jwks_uri"]["actual"]
    assert "jwks" not in found  # nothing fetched from a URL refused
    assert found["signature"]["actual"] == "not checked: no usable keys"


def test_jwks_without_keys_list(capsys: pytest.CaptureFixture[str], idp: FakeIssuer) -> None:
    idp.fault("no_keys")
    status, out, _ = check(capsys, idp)
    assert status == 3
    assert "  FAIL  jwks        no 'keys' list" in out
    assert f"{' ' * 20}expected: a JSON object with a 'keys' list" in out
    assert "algorithms" not in out  # no keys: nothing to compare


def test_keys_past_the_limit_are_ignored(
    capsys: pytest.CaptureFixture[str], idp: FakeIssuer
) -> None:
    for index in range(MAX_JWKS_KEYS):
        idp.publish_raw_jwk({"kty": "oct", "kid": f"shared-{index}", "k": "c2VjcmV0"})
    status, out, _ = check(capsys, idp, "--json")
    document = json.loads(out)
    limit = [f for f in document["findings"] if f["check"] == "jwks" and f["status"] == WARN]
    assert status == 0
    assert [(f["expected"], f["actual"]) for f in limit] == [
        (f"at most {MAX_JWKS_KEYS} keys", "1 more ignored")
    ]
    assert findings(out)["jwks"]["actual"] == f"1 usable of {MAX_JWKS_KEYS + 1}"
    assert f"key kid='shared-{MAX_JWKS_KEYS - 1}'" not in {f["check"] for f in document["findings"]}


def test_a_key_no_allowed_algorithm_fits(
    capsys: pytest.CaptureFixture[str], idp: FakeIssuer
) -> None:
    rsa = idp.add_key("RS256")
    status, out, _ = check(capsys, idp, "--algorithm", "ES256")
    assert status == 0  # the ES256 key still verifies: a warning
    assert "  WARN  algorithms  the keys verify: ES256, RS256" in out
    assert f"{' ' * 20}expected: allowed: ES256" in out.splitlines()
    hint = f"hint: keys no allowed algorithm fits (tokens they sign are refused): {rsa.kid!r}"
    assert " " * 20 + hint in out.splitlines()  # the whole kid (a 43-character thumbprint)


def test_an_unreachable_issuer(capsys: pytest.CaptureFixture[str]) -> None:
    issuer = f"http://127.0.0.1:{closed_port()}"
    status, out, _ = run(capsys, "check", "--issuer", issuer, "--audience", AUDIENCE, "--json")
    found = findings(out)
    assert status == 3
    assert found["discovery"]["status"] == FAIL
    assert "configure jwks_uri (--jwks-uri)" in found["discovery"]["hint"]
    assert "clock skew" not in found  # no reply: no Date to compare with


async def test_a_clock_off_is_a_warning() -> None:
    issuer = FakeIssuer(algorithm="ES256")
    with issuer.serve():
        result = await diagnose(
            {"issuer": issuer.issuer, "audience": AUDIENCE}, clock=lambda: time.time() + 120
        )
    skew = {f.check: f for f in result.findings}["clock skew"]
    assert skew.status == WARN
    assert skew.expected == "within 30 s (the leeway) of the IdP's Date header"
    assert skew.actual.startswith("this clock is about 12")  # 120 s, give or take a second
    assert " s ahead of the IdP's (" in skew.actual
    assert "synchronise it (NTP)" in skew.hint
    assert not result.failed("idp")


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


@pytest.mark.parametrize(
    ("header", "check_name", "actual", "hint"),
    [
        ({"alg": "ES256", "kid": 5}, "kid", "5", "the header's alg or kid is not a string"),
        ({"alg": "ES256", "typ": 1}, "typ", "1", "not an access token (an ID token?)"),
        ({"alg": "ES256", "typ": "dpop+jwt"}, "typ", "'dpop+jwt'", "not an access token"),
    ],
    ids=["kid-not-a-string", "typ-not-a-string", "typ-not-an-access-token"],
)
def test_a_wrong_header(
    capsys: pytest.CaptureFixture[str],
    idp: FakeIssuer,
    header: dict[str, object],
    check_name: str,
    actual: str,
    hint: str,
) -> None:
    token = with_header(idp.mint(), **header)
    status, out, _ = check(capsys, idp, "--token", token, "--json")
    found = findings(out)[check_name]
    assert status == 1
    assert (found["status"], found["area"], found["actual"]) == (FAIL, "token", actual)
    assert found["hint"].startswith(hint)
    assert findings(out)["verdict"]["status"] == FAIL
    assert signature(token) not in out


def test_an_id_token_in_strict_mode(
    capsys: pytest.CaptureFixture[str], idp: FakeIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in idp.environ().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("RESOURCE_GUARD_STRICT", "true")
    status, out, _ = run(capsys, "check", "--env", "--token", idp.mint(typ="JWT"))
    assert status == 1
    assert "  FAIL  typ         'JWT'" in out
    assert f"{' ' * 20}expected: at+jwt" in out.splitlines()
    assert "hint: not an access token (an ID token?)" in out
    assert "refused (invalid_token_type)" in out


@pytest.mark.parametrize(
    ("mint", "check_name", "actual"),
    [
        ({"omit": ["exp"]}, "exp", "(missing)"),
        ({"claims": {"nbf": "soon"}}, "nbf", "not a number"),
        ({"claims": {"iat": True}}, "iat", "not a number"),
        ({"omit": ["aud"]}, "aud", "(missing)"),
        ({"claims": {"aud": 5}}, "aud", "5"),
    ],
    ids=["no-exp", "nbf-text", "iat-bool", "no-aud", "aud-number"],
)
def test_a_wrong_claim(
    capsys: pytest.CaptureFixture[str],
    idp: FakeIssuer,
    mint: dict[str, Any],
    check_name: str,
    actual: str,
) -> None:
    status, out, _ = check(capsys, idp, "--token", idp.mint(**mint), "--json")
    found = findings(out)
    assert status == 1
    assert (found[check_name]["status"], found[check_name]["actual"]) == (FAIL, actual)
    assert found["signature"]["actual"] == "verifies"
    assert found["verdict"]["actual"].startswith("refused (")


def test_a_time_past_the_calendar(capsys: pytest.CaptureFixture[str], idp: FakeIssuer) -> None:
    status, out, _ = check(capsys, idp, "--token", idp.mint(claims={"exp": 1e20}), "--json")
    found = findings(out)
    assert found["exp"]["actual"] == "1e+20 (not a representable time)"
    assert found["verdict"]["actual"] == "refused (invalid_claim): 'exp' claim is out of range"
    assert status == 1


def test_leeway_and_timeout(capsys: pytest.CaptureFixture[str], idp: FakeIssuer) -> None:
    token = idp.mint(expires_in=-10)  # expired 10 s ago: within the default 30 s leeway
    status, _, _ = check(capsys, idp, "--token", token)
    assert status == 0
    status, out, _ = check(capsys, idp, "--token", token, "--leeway", "0", "--timeout", "2.5")
    assert status == 1
    assert "expected: later than now - 0 s leeway" in out
    assert "hint: the token expired: get a new one" in out
    status, _, err = check(capsys, idp, "--leeway", "soon")
    assert status == 2
    assert "--leeway: 'soon' is not a number of seconds" in err


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


async def test_keys_gone_by_the_time_the_token_is_verified() -> None:
    """The IdP fails between the JWKS check and the verifier's own fetch: the verdict
    cannot be reached, which is the issuer's fault (exit status 3), not the token's."""
    issuer = FakeIssuer(algorithm="ES256")

    async def then_fail(response: httpx.Response) -> None:
        if str(response.request.url) == issuer.jwks_uri:
            issuer.fault("status", endpoint="jwks", status=503)

    async with issuer.async_client(event_hooks={"response": [then_fail]}) as client:
        result = await diagnose(
            {"issuer": issuer.issuer, "audience": AUDIENCE}, issuer.mint(), http_client=client
        )
    by_name = {f.check: f for f in result.findings}
    assert by_name["jwks"].status == OK
    assert (by_name["signature"].status, by_name["signature"].actual) == (
        WARN,
        "not checked: keys unavailable",
    )
    verdict = by_name["verdict"]
    assert (verdict.status, verdict.area, verdict.expected) == (FAIL, "idp", "keys to decide with")
    assert "503" in verdict.actual
    assert result.failed("idp")
    assert not result.failed("token")
