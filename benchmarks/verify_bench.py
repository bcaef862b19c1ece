"""TokenVerifier.verify next to the raw signature check and PyJWT, per algorithm.

For each algorithm one token is verified, in each round, by: ``cryptography`` alone (the
floor: the same signature over the same bytes, padding and hash objects built once, an
ECDSA signature already in DER); PyJWT's ``jwt.decode`` with the key preloaded; and
``TokenVerifier.verify`` with the verified-token cache off (cold: everything but the key
fetch) and on (hot: a cache hit, the time window re-checked). ``verify`` is awaited inside
one coroutine, as a server awaits it. A round times each in turn; ratios are per round.

"around" is the cold verification with the signature check skipped: the work around the
signature alone. Cold is more than floor + around on this kind of machine: the two halves
evict each other's code and data from the CPU caches when they alternate.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from benchmarks._common import AUDIENCE, CLIENT_ID, SCOPES
from benchmarks._stats import fmt, median, per_await, per_call, ratio, table
from resource_guard import TokenVerifier
from resource_guard._keyset import VerificationKey
from resource_guard.testing import FakeIssuer

ALGORITHMS = ("RS256", "PS256", "ES256", "EdDSA")


@dataclass(frozen=True)
class VerifyRow:
    """Medians over the rounds (microseconds per token); ratios are to the floor."""

    algorithm: str
    floor_us: float
    pyjwt_us: float
    pyjwt_ratio: float
    cold_us: float
    cold_ratio: float
    around_us: float
    hot_us: float


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def floor_check(key: Any, algorithm: str, token: str) -> Callable[[], None]:
    """The raw ``cryptography`` verification of ``token``'s signature, set up once."""
    header, payload, signature = token.split(".")
    data = f"{header}.{payload}".encode("ascii")
    raw = _b64decode(signature)
    if isinstance(key, rsa.RSAPublicKey):
        pad: padding.AsymmetricPadding = (
            padding.PKCS1v15()
            if algorithm.startswith("RS")
            else padding.PSS(padding.MGF1(hashes.SHA256()), hashes.SHA256.digest_size)
        )
        sha256 = hashes.SHA256()
        return lambda: key.verify(raw, data, pad, sha256)
    if isinstance(key, ec.EllipticCurvePublicKey):
        half = len(raw) // 2
        der = encode_dss_signature(
            int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
        )
        ecdsa = ec.ECDSA(hashes.SHA256())
        return lambda: key.verify(der, data, ecdsa)
    assert isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey)
    return lambda: key.verify(raw, data)


@contextlib.contextmanager
def _signature_skipped() -> Iterator[None]:
    """Every signature counts as valid (for timing the work around it; never elsewhere)."""
    original = VerificationKey.verify
    VerificationKey.verify = lambda self, alg, data, signature: True  # type: ignore[method-assign]
    try:
        yield
    finally:
        VerificationKey.verify = original  # type: ignore[method-assign]


async def _measure_one(
    algorithm: str, rounds: int, iterations: int, hot_iterations: int
) -> VerifyRow:
    fake = FakeIssuer(audience=AUDIENCE, algorithm=algorithm)
    token = fake.mint(scopes=SCOPES, client_id=CLIENT_ID, expires_in=7200)
    async with (
        fake.async_client() as client,
        TokenVerifier(fake.issuer, AUDIENCE, http_client=client, cache_size=0) as cold,
        TokenVerifier(fake.issuer, AUDIENCE, http_client=client) as hot,
    ):
        keys = cold.key_source.keys
        assert keys is not None
        key = keys.keys[0].key
        floor = floor_check(key, algorithm, token)
        floor()  # raises if the setup is wrong

        def pyjwt() -> object:
            return jwt.decode(
                token, key, algorithms=[algorithm], audience=AUDIENCE, issuer=fake.issuer
            )

        def verify_cold() -> Awaitable[object]:
            return cold.verify(token)

        def verify_hot() -> Awaitable[object]:
            return hot.verify(token)

        pyjwt()
        await verify_cold()
        await verify_hot()
        times: dict[str, list[float]] = {
            "floor": [],
            "pyjwt": [],
            "cold": [],
            "around": [],
            "hot": [],
        }
        for _ in range(rounds):
            gc.collect()
            times["floor"].append(per_call(floor, iterations))
            times["pyjwt"].append(per_call(pyjwt, iterations))
            times["cold"].append(await per_await(verify_cold, iterations))
            with _signature_skipped():
                times["around"].append(await per_await(verify_cold, iterations))
            times["hot"].append(await per_await(verify_hot, hot_iterations))
    floors = times["floor"]
    return VerifyRow(
        algorithm=algorithm,
        floor_us=median(floors),
        pyjwt_us=median(times["pyjwt"]),
        pyjwt_ratio=median(map(ratio, times["pyjwt"], floors)),
        cold_us=median(times["cold"]),
        cold_ratio=median(map(ratio, times["cold"], floors)),
        around_us=median(times["around"]),
        hot_us=median(times["hot"]),
    )


def measure_verify(
    *,
    algorithms: Sequence[str] = ALGORITHMS,
    rounds: int = 9,
    iterations: int = 300,
    hot_iterations: int = 20_000,
) -> list[VerifyRow]:
    """One row per algorithm."""

    async def all_rows() -> list[VerifyRow]:
        return [
            await _measure_one(algorithm, rounds, iterations, hot_iterations)
            for algorithm in algorithms
        ]

    return asyncio.run(all_rows())


def render(rows: Sequence[VerifyRow]) -> str:
    """The verify table."""
    headers = (
        "algorithm",
        "floor µs",
        "PyJWT µs",
        "x floor",
        "cold µs",
        "x floor",
        "around µs",
        "hot µs",
    )
    return table(
        headers,
        (
            (
                row.algorithm,
                fmt(row.floor_us),
                fmt(row.pyjwt_us),
                fmt(row.pyjwt_ratio, 2),
                fmt(row.cold_us),
                fmt(row.cold_ratio, 2),
                fmt(row.around_us),
                fmt(row.hot_us, 2),
            )
            for row in rows
        ),
    )
