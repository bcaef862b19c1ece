"""Memory under a stream of distinct valid tokens: does the verifier stay within its bound?

    python benchmarks/memory_tokens.py                     # a million tokens (minutes)
    python benchmarks/memory_tokens.py --tokens 100000     # a quick run, extrapolated

Every token is distinct and valid, so each one misses the verified-token cache, is fully
verified and then cached: the worst case for the cache. How the tokens are made cheaply:

* ES256, the cheapest to sign *and* verify here (an RSA signature costs ~25 times more to
  make; Ed25519 costs more to verify); minted with ``cryptography`` directly, from one
  pre-encoded header segment and a payload template that differs only in ``jti``;
* minted in a separate process, a chunk ahead of the verifier, so minting uses the second
  core and verification runs at its own speed; at most two chunks (``--chunk`` tokens
  each) exist at a time and each token is dropped once verified, so the resident set size
  (RSS) measures what the verifier keeps, plus that small constant.

The report shows RSS while the cache fills (``--cache-size`` entries) and after it is full:
from then on memory must stay flat. A run with fewer than a million tokens projects the
growth to a million from the slope over the second half of the run after the cache filled.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import json
import os
import resource
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from resource_guard import TokenVerifier

ISSUER = "https://issuer.example.test"
AUDIENCE = "api://bench"
KID = "bench-es256"
MIB = 1024 * 1024
MILLION = 1_000_000


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def rss_bytes() -> int:
    """The current resident set size (Linux), else the peak one (other systems)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


class Minter:
    """Distinct ES256 access tokens: one header segment, a payload template, one signature."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, expires: int) -> None:
        self.key = key
        self.expires = expires
        header = {"alg": "ES256", "kid": KID, "typ": "at+jwt"}
        self.header = b64url(json.dumps(header, separators=(",", ":")).encode())
        self._algorithm = ec.ECDSA(hashes.SHA256())

    def token(self, n: int) -> str:
        payload = (
            f'{{"iss":"{ISSUER}","aud":"{AUDIENCE}","sub":"client-{n % 1000}",'
            f'"exp":{self.expires},"jti":"{n:012d}","scope":"orders:read"}}'
        )
        signing_input = f"{self.header}.{b64url(payload.encode())}"
        r, s = decode_dss_signature(self.key.sign(signing_input.encode(), self._algorithm))
        return f"{signing_input}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


_worker_minter: Minter | None = None


def mint_chunk(pem: bytes, expires: int, start: int, count: int) -> list[str]:
    """Tokens ``start`` to ``start + count`` (runs in the minting process)."""
    global _worker_minter
    if _worker_minter is None:
        key = serialization.load_pem_private_key(pem, password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        _worker_minter = Minter(key, expires)
    return [_worker_minter.token(n) for n in range(start, start + count)]


def token_stream(minter: Minter, tokens: int, chunk: int, workers: int) -> Iterator[str]:
    """The tokens in order, minted ahead by ``workers`` processes (0: minted inline)."""
    if workers == 0:
        yield from (minter.token(n) for n in range(tokens))
        return
    pem = minter.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    starts = iter(range(0, tokens, chunk))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        pending: list[Future[list[str]]] = []

        def submit() -> None:
            start = next(starts, None)
            if start is not None:
                count = min(chunk, tokens - start)
                pending.append(pool.submit(mint_chunk, pem, minter.expires, start, count))

        for _ in range(workers + 1):
            submit()
        while pending:
            batch = pending.pop(0).result()
            submit()
            yield from batch
            del batch


@dataclass
class Sample:
    tokens: int
    rss: int
    cached: int


async def run(args: argparse.Namespace) -> list[Sample]:
    minter = Minter(ec.generate_private_key(ec.SECP256R1()), int(time.time()) + 24 * 3600)
    numbers = minter.key.public_key().public_numbers()
    jwk = {
        "kty": "EC",
        "crv": "P-256",
        "x": b64url(numbers.x.to_bytes(32, "big")),
        "y": b64url(numbers.y.to_bytes(32, "big")),
        "kid": KID,
        "alg": "ES256",
    }
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={"keys": [jwk]}))
    async with (
        httpx.AsyncClient(transport=transport) as client,
        TokenVerifier(
            ISSUER,
            AUDIENCE,
            jwks_uri=ISSUER + "/jwks",
            http_client=client,
            cache_size=args.cache_size,
        ) as verifier,
    ):
        cache = verifier.token_cache  # measured, never changed
        for n in range(1000):  # warm up: first allocations, the key set
            await verifier.verify(minter.token(-1 - n))
        if cache is not None:
            cache.clear()
        gc.collect()
        every = max(1, args.tokens // args.samples)
        report: list[Sample] = []
        stream = token_stream(minter, args.tokens, args.chunk, args.workers)
        for n, token in enumerate(stream, 1):
            await verifier.verify(token)
            if n == 1 or n % every == 0 or n == args.cache_size:
                # The first sample is the baseline: minting is under way, one token cached.
                report.append(Sample(n, rss_bytes(), len(cache) if cache is not None else 0))
    return report


def summarise(report: list[Sample], args: argparse.Namespace, seconds: float) -> str:
    base = report[0].rss
    lines = [f"{'tokens':>10}  {'RSS MiB':>8}  {'growth MiB':>10}  {'cached':>8}"]
    lines += [
        f"{s.tokens:>10,}  {s.rss / MIB:>8.1f}  {(s.rss - base) / MIB:>10.1f}  {s.cached:>8,}"
        for s in report
    ]
    full = next((s for s in report if s.tokens >= args.cache_size), report[-1])
    after = [s for s in report if s.tokens >= full.tokens]
    middle, last = after[len(after) // 2], report[-1]
    slope = (last.rss - middle.rss) / max(1, last.tokens - middle.tokens)
    largest = max(s.cached for s in report)
    lines += [
        "",
        f"{args.tokens:,} distinct valid tokens in {seconds:.1f} s "
        f"({args.tokens / seconds:,.0f} per second)",
        f"cache bound: {args.cache_size:,} entries; largest cache seen: {largest:,}",
        f"RSS growth while the cache filled: {(full.rss - base) / MIB:.1f} MiB "
        f"(~{(full.rss - base) / max(1, args.cache_size):,.0f} bytes per cached token)",
        f"RSS growth after the cache was full: {(last.rss - full.rss) / MIB:+.1f} MiB over "
        f"{last.tokens - full.tokens:,} more tokens",
    ]
    if args.tokens < MILLION:
        projected = last.rss - full.rss + slope * (MILLION - last.tokens)
        lines.append(
            f"projected growth after the cache was full, at {MILLION:,} tokens: "
            f"{projected / MIB:+.1f} MiB (rough: the slope of the second half extended; RSS "
            "moves by pages and allocator arenas, so run the full million for a real figure)"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--tokens", type=int, default=MILLION, help="distinct tokens to verify")
    parser.add_argument("--cache-size", type=int, default=4096, help="verified-token cache bound")
    parser.add_argument("--samples", type=int, default=20, help="RSS samples to report")
    parser.add_argument("--chunk", type=int, default=1000, help="tokens minted per chunk")
    parser.add_argument("--workers", type=int, default=1, help="minting processes (0: inline)")
    args = parser.parse_args(argv)
    if min(args.tokens, args.samples, args.chunk) < 1 or min(args.cache_size, args.workers) < 0:
        parser.error("--tokens, --samples and --chunk must be positive; the rest at least 0")
    started = time.perf_counter()
    report = asyncio.run(run(args))
    print(summarise(report, args, time.perf_counter() - started))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
