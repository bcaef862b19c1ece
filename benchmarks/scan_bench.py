"""The ``access_token`` parameter scan on hostile input, through uvicorn on 127.0.0.1.

A request with a bearer token must not also carry an ``access_token`` query or form
parameter (RFC 6750 §2), so the middleware scans the query string and form bodies up to
64 KiB for that name in any spelling. Each row sends one kind of request to the guarded
Starlette app (its token verified before, so the scan is the middleware's main work): a
64 KiB form body or a 60 KB query string of ``%&%&...`` (thousands of empty parameters,
each with a stray ``%``), next to benign ones of the same size; one more body repeats
the name minus its last letter after one ``%``, the costliest input known for the scan
(every parameter is a long partial match). The load is one
keep-alive connection of the asyncio client; every round sends each kind in turn, and a
row's ratio compares it, per round, with the plain benign request of its kind.

The cost is the server's CPU time per request (user + system, ``/proc``): what one such
request takes from the event loop, receiving and parsing the request included.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from benchmarks._common import AUDIENCE, CLIENT_ID, SCOPES, Server, issuer_env, servers
from benchmarks._stats import fmt, median, ratio, table
from benchmarks.loadgen import Load, LoadResult, run_client
from resource_guard.testing import FakeIssuer

BODY_SIZE = 64 * 1024
"""The largest form body the middleware scans (``FORM_SCAN_LIMIT``)."""
QUERY_SIZE = 60_000
TARGET = 3.0
"""Hostile input may cost at most this many times the benign request of the same size."""


def _fill(unit: bytes, size: int) -> str:
    """``unit`` repeated to exactly ``size`` bytes, as the latin-1 text loadgen sends."""
    return (unit * (size // len(unit) + 1))[:size].decode("latin-1")


@dataclass(frozen=True)
class Case:
    """One kind of request: a form body (POST) or a query string (GET)."""

    label: str
    body: str = ""
    query: str = ""
    base: str = ""
    """The label of the benign case this one is compared with; empty: itself."""

    def load(self, port: int, token: str, duration: float) -> Load:
        path = f"/orders?{self.query}" if self.query else "/orders"
        method = "POST" if self.body else "GET"
        return Load(
            port, path=path, tokens=(token,), duration=duration, method=method, body=self.body
        )


BENIGN_BODY = "form body, benign"
BENIGN_QUERY = "query string, benign"
CASES: tuple[Case, ...] = (
    Case(BENIGN_BODY, body=_fill(b"item=tea&quantity=2&note=" + b"x" * 40 + b"&", BODY_SIZE)),
    Case(
        "form body, benign, url-encoded values",
        body=_fill(b"item=caf%C3%A9&note=milk+%26+sugar%2C+please%21&", BODY_SIZE),
        base=BENIGN_BODY,
    ),
    Case("form body, %&%&...", body=_fill(b"%&", BODY_SIZE), base=BENIGN_BODY),
    Case(
        "form body, %&access_toke&access_toke...",
        body="%" + _fill(b"&access_toke", BODY_SIZE - 1),
        base=BENIGN_BODY,
    ),
    Case(BENIGN_QUERY, query=_fill(b"page=2&size=50&q=" + b"x" * 40 + b"&", QUERY_SIZE)),
    Case("query string, %&%&...", query=_fill(b"%&", QUERY_SIZE), base=BENIGN_QUERY),
)


@dataclass(frozen=True)
class Sample:
    """One case in one round."""

    load: LoadResult
    cpu_us: float


@dataclass(frozen=True)
class ScanRow:
    """Medians over the rounds; ratios are to the case's benign baseline, per round."""

    label: str
    cpu_us: float
    cpu_ratio: float
    p50_us: float
    p50_ratio: float
    errors: int


def _sample(server: Server, case: Case, token: str, duration: float) -> Sample:
    before = server.cpu_seconds()
    result = run_client(case.load(server.port, token, duration))
    cpu = (server.cpu_seconds() - before) / result.requests * 1e6 if result.requests else 0.0
    return Sample(result, cpu)


def measure_scan(
    *, rounds: int = 5, duration: float = 2.0, cases: Sequence[Case] = CASES
) -> list[ScanRow]:
    """Send every case ``rounds`` times, in alternation, to one guarded server."""
    labels = {case.label for case in cases}
    missing = sorted({case.base for case in cases if case.base and case.base not in labels})
    if missing:
        raise ValueError(f"measure the baselines too: {missing}")
    fake = FakeIssuer(audience=AUDIENCE)
    with fake.serve():
        token = fake.mint("scanner", scopes=SCOPES, client_id=CLIENT_ID, expires_in=7200)
        samples: dict[str, list[Sample]] = {case.label: [] for case in cases}
        with servers({"guarded": ("starlette-guarded", issuer_env(fake))}) as started:
            server = started["guarded"]
            for case in cases:  # warm up: keys fetched, the token cached, code paths hot
                run_client(case.load(server.port, token, 0.2))
            for _ in range(rounds):
                for case in cases:
                    samples[case.label].append(_sample(server, case, token, duration))
    return [_row(case, samples) for case in cases]


def _row(case: Case, samples: dict[str, list[Sample]]) -> ScanRow:
    mine, base = samples[case.label], samples[case.base or case.label]
    return ScanRow(
        label=case.label,
        cpu_us=median(sample.cpu_us for sample in mine),
        cpu_ratio=median(
            ratio(own.cpu_us, benign.cpu_us) for own, benign in zip(mine, base, strict=True)
        ),
        p50_us=median(sample.load.p50_us for sample in mine),
        p50_ratio=median(
            ratio(own.load.p50_us, benign.load.p50_us)
            for own, benign in zip(mine, base, strict=True)
        ),
        errors=sum(sample.load.errors for sample in mine),
    )


def render(rows: Sequence[ScanRow]) -> str:
    """The scan table; the last column says whether a row meets the target."""
    headers = (
        "request (token cached)",
        "CPU µs/req",
        "x benign",
        "p50 µs",
        "x benign",
        f"≤ {TARGET:g}x",
        "errors",
    )
    return table(
        headers,
        (
            (
                row.label,
                fmt(row.cpu_us, 0),
                fmt(row.cpu_ratio, 2),
                fmt(row.p50_us, 0),
                fmt(row.p50_ratio, 2),
                "yes" if row.cpu_ratio <= TARGET else "no",
                str(row.errors),
            )
            for row in rows
        ),
    )
