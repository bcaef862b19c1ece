"""Fixtures shared by the test modules: the one ``fake`` issuer, its verifier, a clock."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from resource_guard import TokenVerifier
from resource_guard.testing import FakeClock, FakeIssuer
from tests.client_support import TokenServer
from tests.helpers import ORDERS_AUDIENCE, START
from tests.redis_server import RedisServer, require_redis_server


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock at the fixed ``START``; tests move it with ``advance``."""
    return FakeClock(START)


@pytest.fixture
def server() -> TokenServer:
    """The scriptable token endpoint and resource server of the client tests."""
    return TokenServer()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the session (tests/redis_server.py), stopped at the end."""
    require_redis_server()
    with RedisServer(tmp_path_factory.mktemp("redis")) as running:
        yield running


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    """Run the test through httpx.Client and through httpx.AsyncClient."""
    return str(request.param)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "fake_issuer(**options): build the `fake` fixture as FakeIssuer(**options) instead of"
        " the ES256 orders issuer; clock=True runs it on the test's `clock` fixture",
    )


@pytest.fixture
def fake(request: pytest.FixtureRequest) -> FakeIssuer:
    """The suite's one fake issuer: ES256 for the orders API, fresh for each test.

    A module needing another one says so with ``pytestmark = pytest.mark.fake_issuer(...)``
    (the options of ``FakeIssuer``; ``clock=True`` means the test's ``clock`` fixture).
    """
    marker = request.node.get_closest_marker("fake_issuer")
    if marker is None:
        return FakeIssuer(audience=ORDERS_AUDIENCE, algorithm="ES256")
    options: dict[str, Any] = dict(marker.kwargs)
    if options.get("clock") is True:
        options["clock"] = request.getfixturevalue("clock")
    return FakeIssuer(**options)


@pytest.fixture
def verifier(fake: FakeIssuer) -> Iterator[TokenVerifier]:
    """A verifier of ``fake`` for the orders API, fetching keys in-process; the faults a
    test scripts on the (module-scoped) ``fake`` are cleared after it."""
    yield TokenVerifier(fake.issuer, ORDERS_AUDIENCE, http_client=fake.async_client())
    fake.clear_faults()
