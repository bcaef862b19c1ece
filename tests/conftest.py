"""Fixtures shared by the test modules (each module may still define its own)."""

from __future__ import annotations

import pytest

from resource_guard import TokenVerifier
from resource_guard.testing import FakeClock, FakeIssuer
from tests.client_support import TokenServer
from tests.helpers import START

ORDERS_AUDIENCE = "api://orders"
"""The audience of the orders API the middleware, FastAPI and example tests protect."""


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


@pytest.fixture(scope="module")
def fake() -> FakeIssuer:
    """An ES256 fake issuer for the orders API (modules may define their own ``fake``)."""
    return FakeIssuer(audience=ORDERS_AUDIENCE, algorithm="ES256")


@pytest.fixture
def verifier(fake: FakeIssuer) -> TokenVerifier:
    """A verifier of ``fake`` for the orders API, fetching keys in-process."""
    return TokenVerifier(fake.issuer, ORDERS_AUDIENCE, http_client=fake.async_client())
