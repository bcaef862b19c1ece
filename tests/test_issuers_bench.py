"""benchmarks/issuers_bench.py still runs: the least work returns sane rows (no timing
judged here; ``make bench`` prints the ratios)."""

from __future__ import annotations

import pytest
from benchmarks import issuers_bench, run


def test_issuers_compares_three_issuers_with_one_verifier() -> None:
    rows = issuers_bench.measure(algorithms=("ES256",), rounds=1, iterations=1, hot_iterations=1)
    assert [row.algorithm for row in rows] == ["ES256"]
    for row in rows:
        assert row.single_hit_us > 0
        assert row.trusted_hit_us > 0
        assert row.hit_ratio > 0
        assert row.single_cold_us > 0
        assert row.trusted_cold_us > 0
        assert row.cold_ratio > 0
        assert row.refused_us > 0
    rendered = issuers_bench.render(rows)
    assert "3 issuers" in rendered
    assert "ES256" in rendered


def test_run_has_an_issuers_section(capsys: pytest.CaptureFixture[str]) -> None:
    assert "issuers" in run.SECTIONS
    assert run.main(["--quick", "--only", "issuers", "--rounds", "1"]) == 0
    printed = capsys.readouterr().out
    assert "## 3 trusted issuers next to one verifier" in printed
    assert "| RS256 " in printed
