"""Timing loops, medians, percentiles and plain-text tables: what every benchmark reports
with."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence


def per_call(call: Callable[[], object], iterations: int) -> float:
    """Microseconds per call of ``call``, timed over ``iterations`` calls in a row."""
    clock = time.perf_counter
    start = clock()
    for _ in range(iterations):
        call()
    return (clock() - start) / iterations * 1e6


async def per_await(call: Callable[[], Awaitable[object]], iterations: int) -> float:
    """Microseconds per awaited call of ``call``, timed over ``iterations`` in a row."""
    clock = time.perf_counter
    start = clock()
    for _ in range(iterations):
        await call()
    return (clock() - start) / iterations * 1e6


def median(values: Iterable[float]) -> float:
    """The median; NaN for no values."""
    items = list(values)
    return statistics.median(items) if items else math.nan


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by the nearest-rank method; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def ratio(value: float, base: float) -> float:
    """``value / base``; NaN when ``base`` is zero or unknown."""
    return value / base if base and not math.isnan(base) else math.nan


def fmt(value: float, digits: int = 1) -> str:
    """A number for a table cell ("-" for NaN)."""
    if math.isnan(value):
        return "-"
    return f"{value:,.{digits}f}"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A Markdown table whose columns line up in a terminal too."""
    body = [list(headers), *[list(row) for row in rows]]
    widths = [max(len(row[column]) for row in body) for column in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        padded = (
            cell.ljust(width) if column == 0 else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )
        return "| " + " | ".join(padded) + " |"

    rule = (
        "|"
        + "|".join(
            "-" * (width + 1) + (":" if column else "-") for column, width in enumerate(widths)
        )
        + "|"
    )
    return "\n".join([line(body[0]), rule, *(line(row) for row in body[1:])])
