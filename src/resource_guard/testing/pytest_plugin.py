"""pytest fixtures for apps protected by resource-guard (loaded through ``pytest11``).

Installing ``resource-guard[testing]`` makes these fixtures available to every test:

| fixture | what it gives |
|---|---|
| ``fake_clock`` | the ``FakeClock`` every fixture below shares (it stands still) |
| ``fake_issuer`` | a ``FakeIssuer`` served in-process (``https://issuer.example.test``) |
| ``fake_issuer_server`` | another one, served over HTTP on 127.0.0.1 during the test |
| ``fake_issuer_factory`` | ``fake_issuer_factory(issuer=None, *, serve=False, ...)`` |
| ``token_verifier`` | a ``TokenVerifier`` trusting ``fake_issuer`` |
| ``token_verifier_factory`` | ``token_verifier_factory(issuer=None, **options)``: more verifiers |
| ``fake_issuer_env`` | points ``TokenVerifier.from_env()`` at ``fake_issuer``; returns it |
| ``introspection_verifier`` | an ``IntrospectionVerifier`` of ``fake_issuer``'s opaque tokens |
| ``introspection_verifier_factory`` | ``introspection_verifier_factory(issuer=None, **options)`` |
| ``app_client`` | ``app_client(app)``: a started ``AppClient`` (the lifespan ran) |
| ``dpop_key`` | a fresh ES256 ``DPoPKey`` (RFC 9449 proofs) |
| ``dpop_client_auth`` | ``dpop_client_auth(scopes=())``: a DPoP ``ClientCredentialsAuth`` |

The ``fake_issuer`` marker sets defaults for every fake issuer of a test:
``@pytest.mark.fake_issuer(audience="api://orders", algorithm="ES256")``.
docs/pytest-plugin.md describes every fixture.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

import pytest

from resource_guard import TokenVerifier
from resource_guard.client import ClientCredentialsAuth
from resource_guard.dpop import DPoPKey

from ._app_client import AppClient
from ._clock import FakeClock
from ._introspection_fixtures import (
    IntrospectionVerifierFactory,
    introspection_verifier,
    introspection_verifier_factory,
)
from ._issuer import DEFAULT_AUDIENCE, DEFAULT_ISSUER, FakeIssuer
from ._keys import SigningKey, generate_key

__all__ = [
    "AppClientFactory",
    "DPoPAuthFactory",
    "IntrospectionVerifierFactory",
    "IssuerFactory",
    "VerifierFactory",
    "app_client",
    "dpop_client_auth",
    "dpop_key",
    "fake_clock",
    "fake_issuer",
    "fake_issuer_env",
    "fake_issuer_factory",
    "fake_issuer_server",
    "introspection_verifier",
    "introspection_verifier_factory",
    "token_verifier",
    "token_verifier_factory",
]

MARKER = "fake_issuer"
DEFAULT_ALGORITHM = "RS256"
_MARKER_OPTIONS = frozenset({"issuer", "audience", "algorithm"})


class IssuerFactory(Protocol):
    """Type of the ``fake_issuer_factory`` fixture."""

    def __call__(
        self,
        issuer: str | None = None,
        *,
        audience: str | tuple[str, ...] | None = None,
        algorithm: str | None = None,
        serve: bool = False,
    ) -> FakeIssuer: ...


class VerifierFactory(Protocol):
    """Type of the ``token_verifier_factory`` fixture."""

    def __call__(self, issuer: FakeIssuer | None = None, **options: Any) -> TokenVerifier: ...


class AppClientFactory(Protocol):
    """Type of the ``app_client`` fixture."""

    def __call__(
        self,
        app: Any,
        *,
        base_url: str = "http://testserver",
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
    ) -> AppClient: ...


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(issuer=None, audience=None, algorithm=None): defaults "
        "for the fake issuers of this test (resource-guard's pytest plugin)",
    )


class _KeyPool:
    """Signing keys generated once per session: the n-th issuer of every test reuses the
    n-th key of its algorithm (RSA key generation is slow), and no two issuers of one test
    share a key."""

    def __init__(self) -> None:
        self._keys: dict[str, list[SigningKey]] = {}

    def take(self, algorithm: str, index: int) -> SigningKey:
        keys = self._keys.setdefault(algorithm, [])
        while len(keys) <= index:
            keys.append(generate_key(algorithm))
        return keys[index]


@pytest.fixture(scope="session")
def _resource_guard_key_pool() -> _KeyPool:
    return _KeyPool()


def _marker_defaults(request: pytest.FixtureRequest) -> dict[str, Any]:
    marker = request.node.get_closest_marker(MARKER)
    if marker is None:
        return {}
    options = dict(marker.kwargs)
    if marker.args:
        if len(marker.args) > 1 or "issuer" in options:
            raise pytest.UsageError(
                f"@pytest.mark.{MARKER} takes the issuer as its only positional argument"
            )
        options["issuer"] = marker.args[0]
    unknown = sorted(set(options) - _MARKER_OPTIONS)
    if unknown:
        raise pytest.UsageError(
            f"@pytest.mark.{MARKER} got unknown option(s) {', '.join(unknown)}; "
            f"use {', '.join(sorted(_MARKER_OPTIONS))}"
        )
    return options


@pytest.fixture
def fake_clock() -> FakeClock:
    """The clock of every fake issuer and verifier the fixtures make: it stands still at
    the real time of the test's start until the test moves it (``fake_clock.advance(60)``)."""
    return FakeClock()


@pytest.fixture
def fake_issuer_factory(
    request: pytest.FixtureRequest, fake_clock: FakeClock, _resource_guard_key_pool: _KeyPool
) -> Iterator[IssuerFactory]:
    """Make more fake issuers: ``fake_issuer_factory(issuer=None, *, audience=None,
    algorithm=None, serve=False)``.

    Every issuer uses ``fake_clock``; without ``issuer`` they are named
    ``https://issuer-1.example.test``, ``-2``... ``serve=True`` serves it on 127.0.0.1 until
    the test ends. Defaults come from the ``fake_issuer`` marker.
    """
    defaults = _marker_defaults(request)
    used: dict[str, int] = {}
    unnamed = 0

    with contextlib.ExitStack() as stack:

        def make(
            issuer: str | None = None,
            *,
            audience: str | tuple[str, ...] | None = None,
            algorithm: str | None = None,
            serve: bool = False,
        ) -> FakeIssuer:
            nonlocal unnamed
            if not isinstance(serve, bool):
                raise TypeError("serve must be a bool")
            if issuer is None:
                unnamed += 1
                issuer = f"https://issuer-{unnamed}.example.test"
            algorithm = algorithm or defaults.get("algorithm") or DEFAULT_ALGORITHM
            fake = FakeIssuer(  # checks every option before a pooled key is taken
                issuer,
                audience=audience or defaults.get("audience") or DEFAULT_AUDIENCE,
                algorithm=algorithm,
                clock=fake_clock,
            )
            index = used.get(algorithm, 0)
            used[algorithm] = index + 1
            fake.add_key(_resource_guard_key_pool.take(algorithm, index), make_current=True)
            if serve:
                stack.enter_context(fake.serve())
            return fake

        yield make


@pytest.fixture
def fake_issuer(request: pytest.FixtureRequest, fake_issuer_factory: IssuerFactory) -> FakeIssuer:
    """A :class:`FakeIssuer` served in-process: ``https://issuer.example.test``, audience
    ``api://default``, RS256, on ``fake_clock`` (the ``fake_issuer`` marker changes these)."""
    issuer = _marker_defaults(request).get("issuer", DEFAULT_ISSUER)
    return fake_issuer_factory(issuer)


@pytest.fixture
def fake_issuer_server(
    request: pytest.FixtureRequest, fake_issuer_factory: IssuerFactory
) -> FakeIssuer:
    """A :class:`FakeIssuer` of its own, served over HTTP on 127.0.0.1 (an ephemeral port)
    while the test runs: its ``issuer`` is ``http://127.0.0.1:PORT``. For subprocesses,
    real servers and anything that does not take an httpx client."""
    issuer = _marker_defaults(request).get("issuer", DEFAULT_ISSUER)
    return fake_issuer_factory(issuer, serve=True)


@pytest.fixture
def token_verifier_factory(
    request: pytest.FixtureRequest, fake_clock: FakeClock
) -> VerifierFactory:
    """Make verifiers: ``token_verifier_factory(issuer=None, **options)``.

    The verifier trusts ``issuer`` (default: ``fake_issuer``) for its audience, reaches it
    in-process (over HTTP when it is served) and runs on ``fake_clock``. ``options`` go to
    :class:`~resource_guard.TokenVerifier` and win (``audience=``, ``leeway=``...).
    """

    def make(issuer: FakeIssuer | None = None, **options: Any) -> TokenVerifier:
        fake: FakeIssuer = request.getfixturevalue("fake_issuer") if issuer is None else issuer
        if not isinstance(fake, FakeIssuer):
            raise TypeError("issuer must be a FakeIssuer (e.g. one from fake_issuer_factory)")
        options.setdefault("audience", fake.audience)
        options.setdefault("clock", fake_clock)
        if fake.port is None:
            options.setdefault("http_client", fake.async_client())
        return TokenVerifier(fake.issuer, **options)

    return make


@pytest.fixture
def token_verifier(token_verifier_factory: VerifierFactory) -> TokenVerifier:
    """A :class:`~resource_guard.TokenVerifier` for ``fake_issuer``: its audience, reached
    in-process, on ``fake_clock``. Pass it to your app factory or middleware."""
    return token_verifier_factory()


def _pointing_from_env(
    original: Callable[..., TokenVerifier], fake: FakeIssuer, clock: FakeClock
) -> classmethod[Any, Any, TokenVerifier]:
    def from_env(
        cls: type[TokenVerifier], /, environ: Any = None, **overrides: Any
    ) -> TokenVerifier:
        overrides["http_client"] = fake.async_client()
        overrides["clock"] = clock
        return original(cls, environ, **overrides)

    from_env.__doc__ = original.__doc__
    return classmethod(from_env)


@pytest.fixture
def fake_issuer_env(
    fake_issuer: FakeIssuer, fake_clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> FakeIssuer:
    """Point apps that build their verifier with ``TokenVerifier.from_env()`` at
    ``fake_issuer``; returns ``fake_issuer``.

    Sets ``RESOURCE_GUARD_ISSUER``, ``RESOURCE_GUARD_AUDIENCE`` and
    ``RESOURCE_GUARD_JWKS_URI`` for the test, and makes ``from_env()`` give its verifiers
    an in-process client to the fake and ``fake_clock``. Build the app inside the test (an
    app factory), after this fixture ran.
    """
    for name, value in fake_issuer.environ().items():
        monkeypatch.setenv(name, value)
    original = TokenVerifier.__dict__["from_env"].__func__
    monkeypatch.setattr(
        TokenVerifier, "from_env", _pointing_from_env(original, fake_issuer, fake_clock)
    )
    return fake_issuer


@pytest.fixture
def app_client() -> Iterator[AppClientFactory]:
    """Call ASGI apps in-process: ``client = app_client(app)`` returns a started
    :class:`AppClient` (the app's lifespan ran, so the middleware fetched its keys) with
    httpx's ``get``/``post``/... methods; it is closed when the test ends."""
    clients: list[AppClient] = []

    def make(app: Any, **options: Any) -> AppClient:
        client = AppClient(app, **options)
        clients.append(client)
        return client.start()

    yield make
    for client in reversed(clients):
        client.close()


@pytest.fixture
def dpop_key() -> DPoPKey:
    """A fresh ES256 :class:`~resource_guard.dpop.DPoPKey`: bind tokens to it
    (``fake_issuer.mint(dpop_key=dpop_key)``) and sign proofs (``dpop_key.proof(...)``)."""
    return DPoPKey.generate()


class DPoPAuthFactory(Protocol):
    """Type of the ``dpop_client_auth`` fixture."""

    def __call__(
        self,
        *,
        scopes: str | tuple[str, ...] = (),
        issuer: FakeIssuer | None = None,
        **options: Any,
    ) -> ClientCredentialsAuth: ...


@pytest.fixture
def dpop_client_auth(
    request: pytest.FixtureRequest, fake_clock: FakeClock, dpop_key: DPoPKey
) -> DPoPAuthFactory:
    """Make DPoP clients: ``dpop_client_auth(scopes=(), issuer=None, **options)``.

    Registers a new client at ``issuer`` (default: ``fake_issuer``) allowed ``scopes`` and
    returns a :class:`~resource_guard.client.ClientCredentialsAuth` with ``dpop=dpop_key``
    on ``fake_clock``, talking to the issuer in-process (over HTTP when it is served).
    ``options`` go to ``ClientCredentialsAuth`` and win.
    """
    made = 0

    def make(
        *, scopes: str | tuple[str, ...] = (), issuer: FakeIssuer | None = None, **options: Any
    ) -> ClientCredentialsAuth:
        nonlocal made
        fake: FakeIssuer = request.getfixturevalue("fake_issuer") if issuer is None else issuer
        if not isinstance(fake, FakeIssuer):
            raise TypeError("issuer must be a FakeIssuer (e.g. one from fake_issuer_factory)")
        made += 1
        client_id, secret = f"dpop-client-{made}", f"dpop-secret-{made}"
        fake.register_client(client_id, secret, scopes=scopes)
        options.setdefault("dpop", dpop_key)
        options.setdefault("clock", fake_clock)
        if fake.port is None:
            options.setdefault("http_client", (fake.client(), fake.async_client()))
        return ClientCredentialsAuth(
            token_url=fake.token_endpoint,
            client_id=client_id,
            client_secret=secret,
            scopes=scopes,
            **options,
        )

    return make
