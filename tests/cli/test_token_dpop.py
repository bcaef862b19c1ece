"""DPoP on the command line: ``token mint --dpop-key`` and ``token proof``
(``resource_guard.cli._dpop``)."""

from __future__ import annotations

import io
import os
import stat
import sys
from pathlib import Path

import pytest

from resource_guard.dpop import DPoPKey, ProofVerifier

from ._harness import mint, one_line_error, run, unverified

URL = "http://127.0.0.1:8000/orders"


@pytest.fixture
def dpop_file(tmp_path: Path) -> Path:
    return tmp_path / "keys" / "dpop.pem"


def proof(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    return run(capsys, "token", "proof", *argv)


def test_mint_binds_the_token_to_a_new_key_file(
    capsys: pytest.CaptureFixture[str], key_file: Path, dpop_file: Path
) -> None:
    status, out, err = run(capsys, "token", "mint", "--dpop-key", str(dpop_file))
    assert status == 0
    assert stat.S_IMODE(dpop_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(dpop_file.parent.stat().st_mode) == 0o700
    key = DPoPKey.load(dpop_file)
    assert unverified(out.strip())["cnf"] == {"jkt": key.thumbprint}
    assert f"created DPoP key file {dpop_file}" in err
    assert "PRIVATE" not in out + err
    again = mint(capsys, "--dpop-key", str(dpop_file))  # the same key next time
    assert unverified(again)["cnf"] == {"jkt": key.thumbprint}


def test_mint_without_a_dpop_key_binds_nothing(
    capsys: pytest.CaptureFixture[str], key_file: Path
) -> None:
    assert "cnf" not in unverified(mint(capsys))


def test_mint_creates_a_key_of_the_algorithm_asked(
    capsys: pytest.CaptureFixture[str], key_file: Path, dpop_file: Path
) -> None:
    mint(capsys, "--dpop-key", str(dpop_file), "--dpop-algorithm", "EdDSA")
    assert DPoPKey.load(dpop_file).algorithm == "EdDSA"


def test_proof_signs_a_proof_the_verifier_accepts(
    capsys: pytest.CaptureFixture[str], dpop_file: Path
) -> None:
    status, out, err = proof(
        capsys, "--key", str(dpop_file), "--url", URL + "?page=2", "--method", "POST"
    )
    assert status == 0
    assert "created DPoP key file" in err
    checked = ProofVerifier().verify(out.strip(), method="POST", url=URL)
    assert checked.jkt == DPoPKey.load(dpop_file).thumbprint
    assert checked.htu == URL
    assert (checked.ath, checked.nonce) == (None, None)


def test_proof_carries_the_token_hash_and_the_nonce(
    capsys: pytest.CaptureFixture[str], dpop_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dpop_file.parent.mkdir(mode=0o700)
    DPoPKey.generate().save(dpop_file)
    monkeypatch.setattr(sys, "stdin", io.StringIO("a.b.c\n"))
    status, out, err = proof(
        capsys, "--key", str(dpop_file), "--url", URL, "--token", "-", "--nonce", "n-1"
    )
    assert status == 0
    assert err == ""
    checked = ProofVerifier().verify(out.strip(), method="GET", url=URL, access_token="a.b.c")
    assert checked.nonce == "n-1"


def test_a_proof_and_a_token_work_together(
    capsys: pytest.CaptureFixture[str], key_file: Path, dpop_file: Path
) -> None:
    token = mint(capsys, "--dpop-key", str(dpop_file))
    status, out, _ = proof(capsys, "--key", str(dpop_file), "--url", URL, "--token", token)
    assert status == 0
    checked = ProofVerifier().verify(out.strip(), method="GET", url=URL, access_token=token)
    assert unverified(token)["cnf"] == {"jkt": checked.jkt}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--url", "/orders"), "absolute http(s) URL"),
        (("--url", URL, "--method", "GET /x"), "method must be an HTTP method"),
        (("--url", URL, "--nonce", ""), "nonce must be a non-empty string"),
        (("--url", URL, "--token", "tök"), "ASCII"),
    ],
    ids=["relative-url", "bad-method", "empty-nonce", "non-ascii-token"],
)
def test_a_bad_request_is_a_one_line_error(
    capsys: pytest.CaptureFixture[str], dpop_file: Path, argv: tuple[str, ...], message: str
) -> None:
    status, out, err = proof(capsys, "--key", str(dpop_file), *argv)
    assert status == 2
    assert out == ""
    assert message in one_line_error(err)


def write(path: Path, data: bytes, mode: int = 0o600) -> Path:
    path.parent.mkdir(mode=0o700, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)
    return path


@pytest.mark.parametrize(
    ("prepare", "message"),
    [
        (lambda p: write(p, b"not a key"), "holds no usable unencrypted private key"),
        (
            lambda p: write(p, DPoPKey.generate().private_pem(password="pw")),
            "holds no usable unencrypted private key",
        ),
        (lambda p: write(p, DPoPKey.generate().private_pem(), 0o644), "chmod 600"),
        (lambda p: p.mkdir(parents=True), "not a regular file"),
        (
            lambda p: write(p.with_name("real.pem"), b"x") and p.symlink_to("real.pem"),
            "cannot read",
        ),
    ],
    ids=["garbage", "encrypted", "loose-mode", "directory", "symlink"],
)
def test_an_unusable_key_file_is_a_one_line_error(
    capsys: pytest.CaptureFixture[str], dpop_file: Path, prepare: object, message: str
) -> None:
    prepare(dpop_file)  # type: ignore[operator]
    status, out, err = proof(capsys, "--key", str(dpop_file), "--url", URL)
    assert status == 2
    assert out == ""
    assert message in one_line_error(err)
    assert "PRIVATE" not in err


def test_a_key_file_of_another_user_is_refused(
    capsys: pytest.CaptureFixture[str], dpop_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(dpop_file, DPoPKey.generate().private_pem())
    monkeypatch.setattr(os, "getuid", lambda: os.stat(dpop_file).st_uid + 1)
    status, _, err = proof(capsys, "--key", str(dpop_file), "--url", URL)
    assert status == 2
    assert "belongs to another user" in one_line_error(err)


def test_a_key_file_that_cannot_be_created_is_a_one_line_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    blocker = write(tmp_path / "file", b"x")
    status, _, err = proof(capsys, "--key", str(blocker / "dpop.pem"), "--url", URL)
    assert status == 2
    assert "cannot create DPoP key file" in one_line_error(err)


def test_a_key_file_made_meanwhile_by_another_process_is_used(
    capsys: pytest.CaptureFixture[str], dpop_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    theirs = DPoPKey.generate()
    original = DPoPKey.save

    def racing(self: DPoPKey, path: str | os.PathLike[str], password: object = None) -> None:
        original(theirs, path)  # the other process wins the race
        original(self, path)  # ours then finds the file there

    monkeypatch.setattr(DPoPKey, "save", racing)
    status, out, err = proof(capsys, "--key", str(dpop_file), "--url", URL)
    assert status == 0
    assert err == ""
    assert ProofVerifier().verify(out.strip(), method="GET", url=URL).jkt == theirs.thumbprint
