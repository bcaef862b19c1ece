"""The fake issuer's key file (``resource_guard.cli._keys``), shared by ``issuer serve``
and ``token mint``."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from resource_guard.cli._keys import default_key_file, load_or_create_keys
from resource_guard.testing import FakeIssuer

from ._harness import FAKE_ISSUER, one_line_error, run

pytestmark = FAKE_ISSUER

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
