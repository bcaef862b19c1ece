"""The benchmarks still run: each measurement, with the least work, returns sane structure.

Nothing here judges speed (that is ``make bench``'s job, in ratios); these tests only keep
benchmarks/ from rotting as the library changes. Servers and load stay on 127.0.0.1.
"""

from __future__ import annotations

import math

import pytest
from benchmarks import (
    _stats,
    apps,
    dpop_bench,
    flood_bench,
    http_bench,
    loadgen,
    run,
    scan_bench,
    verify_bench,
)
from benchmarks._common import AUDIENCE, issuer_env

from resource_guard.testing import FakeIssuer

from .asgi_client import call


async def test_timing_loops_call_as_often_as_asked() -> None:
    calls: list[int] = []

    async def awaited() -> None:
        calls.append(2)

    assert _stats.per_call(lambda: calls.append(1), 3) >= 0
    assert await _stats.per_await(awaited, 2) >= 0
    assert calls == [1, 1, 1, 2, 2]


def test_stats_helpers() -> None:
    """Nearest-rank percentiles, medians, ratios and aligned Markdown tables."""
    assert _stats.percentile([5.0, 1.0, 3.0, 2.0, 4.0], 50) == 3.0
    assert _stats.percentile([1.0, 2.0], 99) == 2.0
    assert math.isnan(_stats.percentile([], 50))
    assert _stats.median([3.0, 1.0, 2.0]) == 2.0
    assert math.isnan(_stats.median([]))
    assert _stats.ratio(3.0, 2.0) == 1.5
    assert math.isnan(_stats.ratio(1.0, 0.0))
    assert _stats.fmt(math.nan) == "-"
    lines = _stats.table(("name", "value"), [("a", "1"), ("long name", "22")]).splitlines()
    assert lines[1] == "|-----------|------:|"
    assert len({len(line) for line in lines}) == 1


def test_verify_measures_every_algorithm_against_its_floor() -> None:
    rows = verify_bench.measure_verify(
        algorithms=verify_bench.ALGORITHMS, rounds=1, iterations=1, hot_iterations=1
    )
    assert [row.algorithm for row in rows] == list(verify_bench.ALGORITHMS)
    for row in rows:
        assert row.floor_us > 0
        assert row.cold_ratio > 0
        assert row.pyjwt_ratio > 0
        assert row.hot_us > 0
        assert row.around_us > 0
    assert "RS256" in verify_bench.render(rows)


def test_http_compares_each_server_with_its_bare_endpoint() -> None:
    """Two servers, one short round, wrk if installed (else the asyncio client, which the
    flood test uses anyway); no request fails."""
    variants = http_bench.VARIANTS[:2]
    rows = http_bench.measure_http(
        rounds=1,
        duration=0.3,
        connections=2,
        use_wrk=loadgen.wrk_available(),
        variants=variants,
    )
    assert [row.label for row in rows] == [variant.label for variant in variants]
    assert rows[0].rps_ratio == 1.0
    for row in rows:
        assert row.errors == 0
        assert row.rps > 0
        assert row.p50_us > 0
    assert "x bare" in http_bench.render(rows, connections=2)


def test_scan_compares_hostile_input_with_benign_input_of_the_same_size() -> None:
    """Hostile and benign payloads have the same size; a short round serves them all."""
    sizes = {
        case.label: len((case.body or case.query).encode("latin-1")) for case in scan_bench.CASES
    }
    for case in scan_bench.CASES:
        assert sizes[case.label] == sizes[case.base or case.label]
    cases = [case for case in scan_bench.CASES if "url-encoded" not in case.label]
    rows = scan_bench.measure_scan(rounds=1, duration=0.2, cases=cases)
    assert [row.label for row in rows] == [case.label for case in cases]
    assert rows[0].p50_ratio == 1.0
    with pytest.raises(ValueError, match="baselines"):
        scan_bench.measure_scan(cases=scan_bench.CASES[1:3])
    for row in rows:
        assert row.errors == 0
        assert row.p50_us > 0
        assert row.p50_ratio > 0
    assert "x benign" in scan_bench.render(rows)


def test_only_plain_gets_go_to_wrk() -> None:
    assert loadgen.Load(1).plain_get
    assert not loadgen.Load(1, method="POST", body="a=1").plain_get
    with pytest.raises(ValueError, match="GET"):
        loadgen.run_wrk(loadgen.Load(1, method="POST", body="a=1"))


def test_flood_counts_fetches_latency_and_lag() -> None:
    result = flood_bench.measure_flood(
        seconds=0.5, flood_rate=100, probe_rate=50, cooldown=1.0, unknown_kids=5
    )
    assert result.flood_requests > 0
    assert 0 <= result.fetches <= result.allowed_fetches
    assert result.health_p99_flood_us > 0
    assert result.lag_max_flood_ms >= 0
    assert "JWKS fetches" in flood_bench.render(result)


def test_dpop_compares_the_proof_check_with_its_floor_and_bearer_requests() -> None:
    rows = dpop_bench.measure_dpop(algorithms=("ES256",), rounds=1, iterations=2)
    assert [(row.store, row.algorithm) for row in rows] == [("MemoryReplayStore", "ES256")]
    assert rows[0].dpop_us > 0
    assert rows[0].floor_us > 0
    assert rows[0].proof_ratio > 0
    assert "proof / floor" in dpop_bench.render(rows)


def test_runner_prints_the_machine_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert run.machine().count("cores") == 1
    assert run.main(["--quick", "--only", "verify", "--rounds", "1"]) == 0
    assert "## Verify" in capsys.readouterr().out


@pytest.mark.parametrize("name", apps.APPS)
async def test_every_benchmark_app_builds_and_answers_health(name: str) -> None:
    fake = FakeIssuer(audience=AUDIENCE)
    result = await call(apps.build(name, issuer_env(fake)), path="/health")
    assert result.status == 200
    assert result.json() == {"status": "ok"}
