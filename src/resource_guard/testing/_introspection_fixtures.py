"""The pytest fixtures for opaque tokens (re-exported by :mod:`.pytest_plugin`)."""

from __future__ import annotations

import secrets
from typing import Any, Protocol

import pytest

from ..introspection import IntrospectionVerifier
from ._clock import FakeClock
from ._issuer import FakeIssuer

__all__ = [
    "INTROSPECTION_CLIENT_ID",
    "IntrospectionVerifierFactory",
    "introspection_verifier",
    "introspection_verifier_factory",
]

INTROSPECTION_CLIENT_ID = "resource-server"
"""The client id the fixtures register for the resource server at the fake issuer."""


class IntrospectionVerifierFactory(Protocol):
    """Type of the ``introspection_verifier_factory`` fixture."""

    def __call__(
        self, issuer: FakeIssuer | None = None, **options: Any
    ) -> IntrospectionVerifier: ...


@pytest.fixture
def introspection_verifier_factory(
    request: pytest.FixtureRequest, fake_clock: FakeClock
) -> IntrospectionVerifierFactory:
    """Make introspection verifiers: ``introspection_verifier_factory(issuer=None, **options)``.

    The verifier asks ``issuer`` (default: ``fake_issuer``) about opaque tokens
    (``fake_issuer.issue_opaque()``), for its audience, on ``fake_clock``, in-process (over
    HTTP when it is served). Unless ``client_id`` is given, a client ``resource-server``
    with a random secret is registered at the issuer and used. ``options`` go to
    :class:`~resource_guard.IntrospectionVerifier` and win.
    """

    def make(issuer: FakeIssuer | None = None, **options: Any) -> IntrospectionVerifier:
        fake: FakeIssuer = request.getfixturevalue("fake_issuer") if issuer is None else issuer
        if not isinstance(fake, FakeIssuer):
            raise TypeError("issuer must be a FakeIssuer (e.g. one from fake_issuer_factory)")
        if "client_id" not in options:
            secret = secrets.token_urlsafe(16)
            fake.register_client(INTROSPECTION_CLIENT_ID, secret)
            options.update(client_id=INTROSPECTION_CLIENT_ID, client_secret=secret)
        options.setdefault("audience", fake.audience)
        options.setdefault("clock", fake_clock)
        if fake.port is None:
            options.setdefault("http_client", fake.async_client())
        return IntrospectionVerifier(fake.issuer, **options)

    return make


@pytest.fixture
def introspection_verifier(
    introspection_verifier_factory: IntrospectionVerifierFactory,
) -> IntrospectionVerifier:
    """An :class:`~resource_guard.IntrospectionVerifier` for ``fake_issuer``'s opaque tokens:
    its audience, reached in-process, on ``fake_clock``."""
    return introspection_verifier_factory()
