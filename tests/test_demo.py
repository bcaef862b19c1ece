"""`make demo` runs examples/demo.py: it must pass end to end, over real loopback HTTP."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

DEMO = Path(__file__).resolve().parent.parent / "examples" / "demo.py"


def test_demo_gets_every_expected_reply(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("examples_demo", DEMO)
    assert spec is not None
    assert spec.loader is not None
    demo = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = demo  # dataclasses look their module up there
    try:
        spec.loader.exec_module(demo)
    finally:
        del sys.modules[spec.name]

    assert demo.main() == 0

    out = capsys.readouterr().out
    assert "all replies as expected" in out
    assert 'error="insufficient_scope"' in out
    assert "FAIL" not in out
    # every challenge points to the RFC 9728 metadata, which the demo shows
    assert 'resource_metadata="http://127.0.0.1:' in out
    assert "RFC 9728 metadata   GET /.well-known/oauth-protected-resource  200 ok" in out
    assert '"scopes_supported":["orders:read","orders:write"]' in out
    # two clients, one token each; the API fetched the JWKS once at start-up
    assert "token requests made to the issuer: 2" in out
    assert "JWKS fetches by the API: 1" in out
