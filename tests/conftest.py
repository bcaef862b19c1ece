"""Fixtures shared by the test modules (each module may still define its own)."""

from __future__ import annotations

import pytest

from resource_guard.testing import FakeClock
from tests.client_support import TokenServer
from tests.helpers import START


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock at the fixed ``START``; tests move it with ``advance``."""
    return FakeClock(START)


@pytest.fixture
def server() -> TokenServer:
    """The scriptable token endpoint and resource server of the client tests."""
    return TokenServer()


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    """Run the test through httpx.Client and through httpx.AsyncClient."""
    return str(request.param)
