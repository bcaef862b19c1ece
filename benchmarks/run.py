"""Run the benchmarks and print their tables: ``make bench`` (``python benchmarks/run.py``).

    python benchmarks/run.py                 # everything (a few minutes)
    python benchmarks/run.py --quick         # fewer rounds, shorter runs (about a minute)
    python benchmarks/run.py --only verify   # verify | issuers | http | scan | flood |
                                             # introspection | dpop (repeatable)
    python benchmarks/run.py --no-wrk        # the asyncio load generator even if wrk exists

Numbers are medians over rounds; every ratio compares two things measured in the same
round of the same run. See docs/performance.md for what each table means.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this folder is sys.path[0]; the package is imported from the root.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != ROOT / "benchmarks"]
sys.path[0:0] = [str(ROOT), str(ROOT / "src")]

from benchmarks import (  # noqa: E402
    dpop_bench,
    flood_bench,
    http_bench,
    introspection_bench,
    issuers_bench,
    scan_bench,
    verify_bench,
)
from benchmarks.loadgen import wrk_available  # noqa: E402

SECTIONS = ("verify", "issuers", "http", "scan", "flood", "introspection", "dpop")


def machine() -> str:
    """nproc, CPU model and Python version: the line every report starts with."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} cores ({model}), Python {platform.python_version()}, "
        f"{platform.system()} {platform.machine()}"
    )


def ensure_wrk() -> bool:
    """True when wrk is available, installing it with setup.sh if it is not."""
    if wrk_available():
        return True
    result = subprocess.run(["sh", str(ROOT / "benchmarks" / "setup.sh")], check=False)
    return result.returncode == 0 and wrk_available()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="resource-guard benchmarks")
    parser.add_argument("--quick", action="store_true", help="fewer rounds, shorter runs")
    parser.add_argument("--only", action="append", choices=SECTIONS, help="run one section")
    parser.add_argument("--rounds", type=int, help="rounds per measurement")
    parser.add_argument("--no-wrk", action="store_true", help="use the asyncio load generator")
    args = parser.parse_args(argv)
    sections = args.only or list(SECTIONS)
    quick = args.quick
    started = time.monotonic()
    print(f"machine: {machine()}")

    if "verify" in sections:
        rounds = args.rounds or (3 if quick else 9)
        verify_rows = verify_bench.measure_verify(
            rounds=rounds, iterations=100 if quick else 300, hot_iterations=5000 if quick else 20000
        )
        print(f"\n## Verify (µs per token, median of {rounds} rounds)\n")
        print(verify_bench.render(verify_rows))

    if "issuers" in sections:
        rounds = args.rounds or (3 if quick else 9)
        issuers_rows = issuers_bench.measure(
            rounds=rounds, iterations=100 if quick else 300, hot_iterations=5000 if quick else 20000
        )
        print(
            f"\n## {issuers_bench.ISSUERS} trusted issuers next to one verifier "
            f"(µs per token, median of {rounds} rounds)\n"
        )
        print(issuers_bench.render(issuers_rows))

    if "http" in sections:
        use_wrk = not args.no_wrk and ensure_wrk()
        rounds = args.rounds or (2 if quick else 5)
        duration = 1.0 if quick else 3.0
        connections = 16
        http_rows = http_bench.measure_http(
            rounds=rounds, duration=duration, connections=connections, use_wrk=use_wrk
        )
        generator = "wrk" if use_wrk else "asyncio client (benchmarks/loadgen.py)"
        print(
            f"\n## HTTP through uvicorn ({generator}; {duration:g} s per run, "
            f"median of {rounds} rounds)\n"
        )
        print(http_bench.render(http_rows, connections=connections))

    if "scan" in sections:
        rounds = args.rounds or (2 if quick else 5)
        duration = 1.0 if quick else 2.0
        scan_rows = scan_bench.measure_scan(rounds=rounds, duration=duration)
        print(
            "\n## The access_token scan on hostile input (uvicorn, one connection; "
            f"{duration:g} s per run, median of {rounds} rounds)\n"
        )
        print(scan_bench.render(scan_rows))

    if "flood" in sections:
        result = flood_bench.measure_flood(seconds=2.0 if quick else 5.0)
        print("\n## Key fetching under a flood of unknown key ids (JWKS answers in 50 ms)\n")
        print(flood_bench.render(result))

    if "introspection" in sections:
        report = introspection_bench.measure(
            rounds=args.rounds or (3 if quick else 9),
            iterations=5000 if quick else 20000,
            duration=1.0 if quick else 3.0,
        )
        print("\n## Opaque tokens: cache hits, and misses at an endpoint answering in 5 ms\n")
        print(introspection_bench.render(report))

    if "dpop" in sections:
        rounds = args.rounds or (3 if quick else 9)
        dpop_rows = dpop_bench.measure_dpop(rounds=rounds, iterations=200 if quick else 1000)
        redis_rows = dpop_bench.measure_dpop_redis(rounds=rounds, iterations=200 if quick else 1000)
        print(
            "\n## DPoP through the middleware: a cached token with a fresh proof "
            f"(µs per request or proof, median of {rounds} rounds)\n"
        )
        print(dpop_bench.render([*dpop_rows, *redis_rows]))
        print(
            "\n" + (dpop_bench.render_round_trip(dpop_rows, redis_rows) or dpop_bench.REDIS_MISSING)
        )

    print(f"\n(took {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
