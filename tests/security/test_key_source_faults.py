"""A misbehaving identity provider, over real loopback HTTP, during normal traffic.

The fake issuer runs on 127.0.0.1 and is made to fail in every way it can: down, slow,
dripping, 5xx, garbage, oversized, a gzip bomb, redirecting, publishing only weak,
encryption or private keys. Time is simulated with an injectable clock (an hour of outage
runs in a moment), network deadlines are real. The promises checked:

* with keys cached, every valid request keeps passing for the whole outage;
* without usable keys, requests get 503 with Retry-After and do not hammer the IdP;
* when the IdP comes back, service recovers without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from resource_guard import TokenVerifier
from resource_guard.testing import FakeClock, FakeIssuer, SigningKey, generate_key
from tests.helpers import bearer

from ._harness import AUDIENCE, Guarded, asgi_call, assert_refused, assert_served

pytestmark = pytest.mark.slow

TIMEOUT = 0.15  # the verifier's fetch deadline: a slow or dripping IdP costs this much
COOLDOWN = 30  # the verifier's default


@dataclass
class Idp:
    """A fake issuer served on a fixed loopback port, which can be stopped and restarted."""

    fake: FakeIssuer
    port: int
    key: SigningKey
    iss: str = ""
    _serving: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def start(self) -> None:
        self._serving.enter_context(self.fake.serve(port=self.port))
        self.iss = self.fake.issuer

    def stop(self) -> None:
        self._serving.close()

    def mint(self, **options: Any) -> str:
        """A valid token (the issuer's own ``iss``, even while it is down)."""
        return self.fake.mint(key=self.key, claims={"iss": self.iss}, **options)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def idp(clock: FakeClock) -> Iterator[Idp]:
    key = generate_key("ES256")
    fake = FakeIssuer(audience=AUDIENCE, clock=clock, jwks_max_age=300)
    fake.add_key(key, make_current=True)
    server = Idp(fake, _free_port(), key)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def app(idp: Idp, clock: FakeClock, idp_client: httpx.AsyncClient) -> AsyncIterator[Guarded]:
    verifier = TokenVerifier(
        idp.iss, AUDIENCE, clock=clock, timeout=TIMEOUT, http_client=idp_client
    )
    guarded = Guarded(verifier, idp.fake)
    yield guarded
    await guarded.aclose()
    await verifier.aclose()


async def settle(verifier: TokenVerifier) -> None:
    """Wait for a key fetch in flight (the clock is simulated, the network is not)."""
    await asyncio.wait_for(verifier.key_source.wait_until_idle(), timeout=5 * TIMEOUT + 1)


# -- the faults -------------------------------------------------------------------------

Fault = Callable[[Idp, FakeIssuer], None]


def _status(code: int) -> Fault:
    return lambda idp, attacker: idp.fake.fault("status", status=code)


def _kind(kind: str, **options: Any) -> Fault:
    return lambda idp, attacker: idp.fake.fault(kind, **options)


def _republish(*jwks: Callable[[SigningKey], dict[str, Any]]) -> Fault:
    """The JWKS now holds only these JWKs (made from the real key) instead of the key."""

    def apply(idp: Idp, attacker: FakeIssuer) -> None:
        idp.fake.remove_key(idp.key.kid)
        for make in jwks:
            idp.fake.publish_raw_jwk(make(idp.key))

    return apply


def _weak(key: SigningKey) -> dict[str, Any]:
    weak = generate_key("RS256", key.kid, key_size=1024)
    return weak.public_jwk()


def _for_encryption(key: SigningKey) -> dict[str, Any]:
    return {**key.public_jwk(), "use": "enc", "alg": "ECDH-ES"}


def _rsa_oaep(key: SigningKey) -> dict[str, Any]:
    other = generate_key("RS256", "enc-1").public_jwk()
    return {**other, "use": "enc", "alg": "RSA-OAEP-256"}


def _private(key: SigningKey) -> dict[str, Any]:
    return key.private_jwk()


def _sign_only(key: SigningKey) -> dict[str, Any]:
    return {**key.public_jwk(), "key_ops": ["sign"]}


def _down(idp: Idp, attacker: FakeIssuer) -> None:
    idp.stop()


def _redirect_to_attacker(idp: Idp, attacker: FakeIssuer) -> None:
    idp.fake.fault("redirect", location=attacker.jwks_uri)


FAULTS: dict[str, Fault] = {
    "idp-down": _down,
    "status-500": _status(500),
    "status-503": _status(503),
    "status-404": _status(404),
    "slow": _kind("slow", delay=1.0),
    "dripping": _kind("drip", delay=0.05),
    "garbage": _kind("garbage"),
    "not-an-object": _kind("not_object"),
    "no-keys-member": _kind("no_keys"),
    "oversized": _kind("oversized"),
    "gzip-bomb": _kind("gzip_bomb"),
    "redirect-same-document": _kind("redirect"),
    "redirect-to-attacker": _redirect_to_attacker,
    "weak-rsa-key-only": _republish(_weak),
    "encryption-keys-only": _republish(_for_encryption, _rsa_oaep),
    "private-key-only": _republish(_private),
    "sign-only-key-ops": _republish(_sign_only),
}


def recover(idp: Idp) -> None:
    """Undo every fault: serve again (same port), clear faults, publish the real key."""
    idp.fake.clear_faults()
    with contextlib.suppress(KeyError):
        idp.fake.remove_key(idp.key.kid)
    idp.fake.add_key(idp.key)
    if idp.fake.port is None:
        idp.start()


@pytest.fixture
def attacker() -> Iterator[FakeIssuer]:
    with FakeIssuer(audience=AUDIENCE).serve() as fake:
        yield fake


# -- with keys cached: an hour of outage, no failed request ---------------------------------


async def traffic_for(app: Guarded, idp: Idp, clock: FakeClock, minutes: int) -> list[int]:
    """``minutes`` of simulated traffic: every other minute a reused long-lived token (the
    verified-token cache) and a fresh one (a full verification), concurrently, straight
    into the ASGI app. Returns the statuses of the requests that failed."""
    long_lived = idp.mint(subject="batch-job", expires_in=3 * 3600)
    failed: list[int] = []
    calls = app.calls.count
    steps = minutes // 2
    for _ in range(steps):
        clock.advance(120)
        replies = await asyncio.gather(
            *(asgi_call(app.app, bearer(token)) for token in (long_lived, idp.mint()))
        )
        failed += [status for status, _, _ in replies if status != 200]
        await settle(app.verifier)
    assert app.calls.count - calls == 2 * steps - len(failed)  # the handler ran for each
    return failed


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_an_hour_of_idp_failure_fails_no_valid_request_and_recovers(
    fault: str, app: Guarded, idp: Idp, clock: FakeClock, attacker: FakeIssuer
) -> None:
    await app.verifier.start()
    assert_served(await app.send(idp.mint()))
    fetches_before = app.verifier.key_source.fetch_count

    FAULTS[fault](idp, attacker)
    failed = await traffic_for(app, idp, clock, minutes=60)

    assert failed == []
    source = app.verifier.key_source
    attempts = source.fetch_count - fetches_before
    assert 2 <= attempts <= 20, f"{attempts} refresh attempts in an hour"  # tried, backed off
    assert source.last_error is not None
    assert sum(attacker.counts.values()) == 0

    recover(idp)
    new_key = idp.fake.rotate_keys("ES256")  # a key the verifier has never seen
    clock.advance(600)  # past any backoff (at most 300 s plus jitter)
    seen = await app.send(idp.fake.mint(key=new_key, claims={"iss": idp.iss}))
    assert_served(seen)
    assert source.last_error is None


# -- without usable keys: 503 with Retry-After, then recovery --------------------------------

NO_KEY_FAULTS = [
    "idp-down",
    "status-503",
    "slow",
    "garbage",
    "no-keys-member",
    "gzip-bomb",
    "redirect-to-attacker",
    "weak-rsa-key-only",
    "encryption-keys-only",
]


@pytest.mark.parametrize("fault", NO_KEY_FAULTS)
async def test_without_usable_keys_requests_get_503_and_service_recovers(
    fault: str,
    app: Guarded,
    idp: Idp,
    clock: FakeClock,
    attacker: FakeIssuer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    FAULTS[fault](idp, attacker)
    with caplog.at_level(logging.ERROR, logger="resource_guard.jwks"):
        await app.verifier.start()  # logs, does not raise
    assert "no usable keys" in caplog.text
    token = idp.mint()
    source = app.verifier.key_source
    fetches = source.fetch_count

    for _ in range(5):
        seen = await app.send(token)
        assert_refused(seen, 503, None, fetches=None, secrets={token})
    assert source.fetch_count == fetches, "requests during the backoff reached the IdP"
    assert token not in caplog.text
    assert sum(attacker.counts.values()) == 0

    recover(idp)
    clock.advance(int(seen.headers["retry-after"]))
    assert_served(await app.send(token))
    assert source.fetch_count == fetches + 1


@pytest.mark.parametrize("fault", ["idp-down", "status-503", "slow", "garbage"])
async def test_service_returns_within_one_cooldown_of_the_idp_s_recovery(
    fault: str, app: Guarded, idp: Idp, clock: FakeClock, attacker: FakeIssuer
) -> None:
    """Issue 11: failures stretch the background backoff (here to 8 minutes and more), but
    requests waiting for keys may fetch once per cooldown: 200 one cooldown after recovery."""
    FAULTS[fault](idp, attacker)
    await app.verifier.start()
    source = app.verifier.key_source
    for _ in range(4):
        assert await source.refresh() is False  # five failures in a row: a long backoff
    token = idp.mint(expires_in=7200)
    refused = [await app.send(token)]  # inside the cooldown: at once, no fetch
    clock.advance(COOLDOWN)
    refused.append(await app.send(token))  # one fetch, still failing
    recover(idp)
    clock.advance(COOLDOWN)
    assert_served(await app.send(token))
    assert source.last_error is None
    for seen in refused:
        assert_refused(seen, 503, None, fetches=None, secrets={token})
        assert seen.headers["retry-after"] == str(COOLDOWN)  # when a fetch may go out
    assert source.fetch_count == 7


async def test_keys_older_than_max_stale_fail_closed_then_recover(
    idp: Idp, clock: FakeClock, idp_client: httpx.AsyncClient
) -> None:
    """Stale keys serve for ``max_stale`` past their age, never longer: then 503."""
    verifier = TokenVerifier(
        idp.iss, AUDIENCE, clock=clock, timeout=TIMEOUT, max_stale=600, http_client=idp_client
    )
    app = Guarded(verifier, idp.fake)
    try:
        await verifier.start()
        token = idp.mint(expires_in=7200)
        idp.stop()
        clock.advance(300 + 600 - 1)  # the JWKS max-age, plus max_stale, minus a second
        assert_served(await app.send(token))
        await settle(verifier)
        clock.advance(2)
        await settle(verifier)
        refused = await app.send(token)
        assert_refused(refused, 503, None, fetches=None, secrets={token})
        recover(idp)
        clock.advance(int(refused.headers["retry-after"]))
        assert_served(await app.send(token))
    finally:
        await app.aclose()
        await verifier.aclose()


async def test_a_key_source_failure_never_turns_into_a_200_for_a_forged_token(
    app: Guarded, idp: Idp, clock: FakeClock, attacker: FakeIssuer
) -> None:
    """While the IdP misbehaves, refusals stay refusals: forged tokens get 401 or 503."""
    await app.verifier.start()
    forged = idp.fake.mint(key=generate_key("ES256", idp.key.kid), claims={"iss": idp.iss})
    for fault in FAULTS:
        recover(idp)
        FAULTS[fault](idp, attacker)
        clock.advance(600)
        seen = await app.send(forged)
        assert seen.status in (401, 503), fault
        assert seen.handler_calls == 0
        await settle(app.verifier)


def test_the_fault_table_covers_every_kind_the_fake_issuer_offers() -> None:
    from resource_guard.testing import FAULT_KINDS

    used = {"status", "slow", "drip", "garbage", "not_object", "no_keys", "oversized"}
    used |= {"gzip_bomb", "redirect"}
    introspection_only = {"active_string"}  # tests/introspection/test_failures.py
    assert set(FAULT_KINDS) - introspection_only <= used
