"""Fixtures of the introspection tests: a fake issuer served on loopback, with a client
registered for the resource server, and verifiers of it that are closed after the test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, Protocol

import pytest

from resource_guard import IntrospectionVerifier
from resource_guard.testing import FakeClock, FakeIssuer
from tests.helpers import ORDERS_AUDIENCE

CLIENT_ID = "orders-api"
CLIENT_SECRET = "orders-api-secret"


class MakeVerifier(Protocol):
    def __call__(self, **options: Any) -> IntrospectionVerifier: ...


@pytest.fixture
def issuer(clock: FakeClock) -> Iterator[FakeIssuer]:
    """A fake issuer on the test's clock, served on 127.0.0.1, knowing the resource server
    as a confidential client."""
    fake = FakeIssuer(audience=ORDERS_AUDIENCE, algorithm="ES256", clock=clock)
    fake.register_client(CLIENT_ID, CLIENT_SECRET)
    with fake.serve():
        yield fake


@pytest.fixture
async def make_verifier(issuer: FakeIssuer, clock: FakeClock) -> AsyncIterator[MakeVerifier]:
    """``make_verifier(**options)``: an IntrospectionVerifier of ``issuer`` for the orders
    API, authenticating with the client secret, on the test's clock (options win)."""
    made: list[IntrospectionVerifier] = []

    def make(**options: Any) -> IntrospectionVerifier:
        options.setdefault("client_id", CLIENT_ID)
        if "private_key" not in options:
            options.setdefault("client_secret", CLIENT_SECRET)
        options.setdefault("clock", clock)
        verifier = IntrospectionVerifier(
            options.pop("issuer", issuer.issuer),
            options.pop("audience", ORDERS_AUDIENCE),
            **options,
        )
        made.append(verifier)
        return verifier

    yield make
    for verifier in made:
        await verifier.aclose()


@pytest.fixture
def verifier(make_verifier: MakeVerifier) -> IntrospectionVerifier:
    """The default verifier: endpoint discovered, JSON answers, client_secret_basic."""
    return make_verifier()
