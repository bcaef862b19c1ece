"""benchmarks/introspection_bench.py still runs: the least work, a sane structure, and the
burst's single-flight (one call for every concurrent request) holds. Speed is not judged."""

from __future__ import annotations

from benchmarks import introspection_bench, run


def test_the_introspection_benchmark_runs() -> None:
    report = introspection_bench.measure(
        rounds=1, iterations=10, concurrency=(2,), duration=0.2, burst=50, latency=0.001
    )
    assert [row.path for row in report.hits] == [
        "cached(bytes): the middleware's path",
        "await verify(token)",
    ]
    assert all(row.jwt_us > 0 and row.opaque_us > 0 and row.ratio > 0 for row in report.hits)
    (miss,) = report.misses
    assert miss.concurrency == 2
    assert miss.requests == miss.calls > 0
    assert miss.rps > 0
    assert miss.p99_ms >= miss.p50_ms > 0
    assert (report.burst.requests, report.burst.calls) == (50, 1)
    text = introspection_bench.render(report)
    assert "opaque / JWT" in text
    assert "introspection calls" in text
    assert "introspection" in run.SECTIONS
