"""DPoPPolicy: which scheme a token may use, and the stateful checks of a proof."""

from __future__ import annotations

from typing import Any

import pytest

from resource_guard import InvalidDPoPProofError, ReplayStoreUnavailableError, UseDPoPNonceError
from resource_guard.dpop import DPoPKey, DPoPPolicy, MemoryReplayStore, NonceSource
from resource_guard.dpop._policy import (
    DISABLED,
    DOWNGRADE,
    KEY_MISMATCH,
    NOT_BOUND,
    REPLAYED,
    REQUIRED,
    bound_key,
    replay_key,
)
from resource_guard.testing import FakeClock
from tests.helpers import START

URL = "https://api.example.com/orders"
TOKEN = "a.b.c"


@pytest.fixture
def key() -> DPoPKey:
    return DPoPKey.generate()


@pytest.fixture
def policy(clock: FakeClock) -> DPoPPolicy:
    return DPoPPolicy(clock=clock)


async def _check(policy: DPoPPolicy, proof: str, key: DPoPKey) -> Any:
    return await policy.check(proof, method="GET", url=URL, access_token=TOKEN, jkt=key.thumbprint)


async def test_a_valid_bound_proof_passes_once(policy: DPoPPolicy, key: DPoPKey) -> None:
    proof = key.proof("GET", URL, access_token=TOKEN, now=START)
    assert (await _check(policy, proof, key)).jkt == key.thumbprint
    with pytest.raises(InvalidDPoPProofError, match=REPLAYED):
        await _check(policy, proof, key)


async def test_the_default_store_runs_on_the_policy_s_clock(
    policy: DPoPPolicy, key: DPoPKey, clock: FakeClock
) -> None:
    """The proof window and the store's memory are measured on one clock, so a clock
    stepped back can never make a remembered proof look fresh while it is forgotten."""
    store = policy.replay_store
    assert isinstance(store, MemoryReplayStore)
    await _check(policy, key.proof("GET", URL, access_token=TOKEN, now=START), key)
    clock.advance(300)  # still inside the window (max_age 300 + leeway 5)
    assert len(store) == 1
    clock.advance(10)  # past it, on the policy's clock alone
    assert len(store) == 0


async def test_a_proof_of_another_key_is_refused(policy: DPoPPolicy, key: DPoPKey) -> None:
    proof = DPoPKey.generate().proof("GET", URL, access_token=TOKEN, now=START)
    with pytest.raises(InvalidDPoPProofError, match=KEY_MISMATCH):
        await _check(policy, proof, key)


async def test_a_refused_proof_is_not_remembered(clock: FakeClock, key: DPoPKey) -> None:
    store = MemoryReplayStore()
    policy = DPoPPolicy(clock=clock, replay_store=store)
    with pytest.raises(InvalidDPoPProofError):
        await _check(policy, key.proof("POST", URL, access_token=TOKEN, now=START), key)
    assert len(store) == 0


async def test_the_store_remembers_a_digest_for_the_rest_of_the_window(
    clock: FakeClock, key: DPoPKey
) -> None:
    seen: list[tuple[str, float]] = []

    class Recorder:
        async def seen_before(self, jti: str, expires_in: float) -> bool:
            seen.append((jti, expires_in))
            return False

        async def aclose(self) -> None:
            seen.append(("closed", 0))

    policy = DPoPPolicy(clock=clock, replay_store=Recorder(), max_age=60, leeway=5)
    result = await _check(policy, key.proof("GET", URL, access_token=TOKEN, now=START - 10), key)
    assert seen == [(replay_key(key.thumbprint, result.jti), 55)]
    assert result.jti not in seen[0][0]
    await policy.aclose()
    assert seen[-1] == ("closed", 0)


async def test_a_store_that_cannot_answer_refuses_the_proof(clock: FakeClock, key: DPoPKey) -> None:
    class Down:
        async def seen_before(self, jti: str, expires_in: float) -> bool:
            raise ReplayStoreUnavailableError("redis is down", retry_after=3)

        async def aclose(self) -> None: ...

    policy = DPoPPolicy(clock=clock, replay_store=Down())
    with pytest.raises(ReplayStoreUnavailableError):
        await _check(policy, key.proof("GET", URL, access_token=TOKEN, now=START), key)


async def test_nonces_are_demanded_and_rotate(clock: FakeClock, key: DPoPKey) -> None:
    nonces = NonceSource(b"n" * 16, window=60, clock=clock)
    policy = DPoPPolicy(clock=clock, nonces=nonces)
    for nonce in (None, "stale-or-made-up"):
        with pytest.raises(UseDPoPNonceError) as caught:
            await _check(
                policy, key.proof("GET", URL, access_token=TOKEN, nonce=nonce, now=START), key
            )
        assert caught.value.nonce == nonces.current()
        assert caught.value.code == "use_dpop_nonce"
    current = nonces.current()
    fresh = await _check(
        policy, key.proof("GET", URL, access_token=TOKEN, nonce=current, now=START), key
    )
    assert policy.next_nonce(fresh) is None
    clock.advance(60)
    previous = await _check(
        policy, key.proof("GET", URL, access_token=TOKEN, nonce=current, now=clock()), key
    )
    assert policy.next_nonce(previous) == nonces.current() != current


async def test_without_nonces_there_is_never_a_next_one(policy: DPoPPolicy, key: DPoPKey) -> None:
    proof = await _check(
        policy, key.proof("GET", URL, access_token=TOKEN, nonce="x", now=START), key
    )
    assert policy.next_nonce(proof) is None


@pytest.mark.parametrize(
    ("mode", "dpop_scheme", "bound", "reason"),
    [
        ("allowed", False, False, None),
        ("allowed", False, True, DOWNGRADE),
        ("allowed", True, True, None),
        ("allowed", True, False, NOT_BOUND),
        ("required", False, False, REQUIRED),
        ("required", False, True, DOWNGRADE),
        ("required", True, True, None),
        ("required", True, False, NOT_BOUND),
        ("off", False, False, None),
        ("off", False, True, DISABLED),
        ("off", True, True, DISABLED),
        ("off", True, False, DISABLED),
    ],
)
def test_which_scheme_a_token_may_use(
    mode: Any, dpop_scheme: bool, bound: bool, reason: str | None
) -> None:
    policy = DPoPPolicy(mode)
    assert policy.refusal(dpop_scheme=dpop_scheme, jkt="t" if bound else None) == reason
    assert policy.enabled is (mode != "off")
    assert policy.bearer_allowed is (mode != "required")


@pytest.mark.parametrize(
    ("claims", "jkt"),
    [
        ({}, None),
        ({"cnf": None}, None),
        ({"cnf": "x"}, None),
        ({"cnf": {"x5t#S256": "abc"}}, None),
        ({"cnf": {"jkt": "thumb"}}, "thumb"),
        ({"cnf": {"jkt": 5}}, ""),
    ],
)
def test_the_bound_key_is_cnf_jkt(claims: dict[str, Any], jkt: str | None) -> None:
    assert bound_key(claims) == jkt


def test_of_takes_a_mode_or_a_policy() -> None:
    policy = DPoPPolicy("off", algorithms=["ES256"])
    assert DPoPPolicy.of(policy) is policy
    assert DPoPPolicy.of("required").mode == "required"
    assert policy.algorithms == frozenset({"ES256"})
    assert repr(policy) == "DPoPPolicy('off')"
    assert isinstance(DPoPPolicy().replay_store, MemoryReplayStore)


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: DPoPPolicy.of("sometimes"), ValueError),
        (lambda: DPoPPolicy.of(True), TypeError),
        (lambda: DPoPPolicy("on"), ValueError),  # type: ignore[arg-type]
        (lambda: DPoPPolicy(replay_store=object()), TypeError),  # type: ignore[arg-type]
        (lambda: DPoPPolicy(nonces="n" * 20), TypeError),  # type: ignore[arg-type]
        (lambda: DPoPPolicy(max_age=0), ValueError),
    ],
)
def test_bad_options_fail_at_construction(call: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        call()
