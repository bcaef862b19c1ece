"""Fixtures of the command-line tests: a private key file per test, a frozen clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from resource_guard.cli import _token
from resource_guard.cli._keys import load_or_create_keys

from ._harness import NOW


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
    monkeypatch.setattr(_token, "clock", lambda: NOW)
