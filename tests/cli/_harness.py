"""How the command-line tests run ``resource-guard``: in-process through ``main(argv)``,
capturing what a user would see (exit status, standard output, standard error)."""

from __future__ import annotations

from typing import Any

import jwt
import pytest

from resource_guard import cli

NOW = 1_800_000_000
FAKE_ISSUER = pytest.mark.fake_issuer(algorithm="ES256", clock=lambda: NOW)
"""What the command-line tests' ``fake`` is: an ES256 issuer on a clock frozen at ``NOW``."""


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
