"""Metrics with OpenTelemetry (issue 13, part 3): decisions, verification latency and the key
source, read back through the SDK's in-memory metric reader."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ExponentialHistogramDataPoint,
    HistogramDataPoint,
    InMemoryMetricReader,
    NumberDataPoint,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from resource_guard import BearerAuthMiddleware, Decision, TokenVerifier
from resource_guard.otel import DURATION_BUCKETS, Metrics
from resource_guard.starlette import require_scopes
from resource_guard.testing import FakeIssuer
from tests import asgi_client
from tests.helpers import ORDERS_AUDIENCE

Point = NumberDataPoint | HistogramDataPoint | ExponentialHistogramDataPoint


async def orders(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


@require_scopes("orders:write")
async def write_orders(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def metrics(reader: InMemoryMetricReader) -> Iterator[Metrics]:
    """Metrics on a fresh SDK provider, read by ``reader``."""
    provider = MeterProvider(metric_readers=[reader])
    yield Metrics(meter_provider=provider)
    provider.shutdown()


def points(reader: InMemoryMetricReader, name: str) -> dict[frozenset[tuple[str, Any]], Point]:
    """The data points of metric ``name``, by their attributes."""
    found: dict[frozenset[tuple[str, Any]], Point] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data is not None else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    for point in metric.data.data_points:
                        found[frozenset((point.attributes or {}).items())] = point
    return found


def values(reader: InMemoryMetricReader, name: str) -> dict[frozenset[tuple[str, Any]], Any]:
    """``{attributes: value}`` of a counter or gauge, ``{attributes: count}`` of a histogram."""
    return {
        attributes: point.value if isinstance(point, NumberDataPoint) else point.count
        for attributes, point in points(reader, name).items()
    }


def labels(**attributes: Any) -> frozenset[tuple[str, Any]]:
    return frozenset(attributes.items())


def bearer(token: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {token}".encode())]


def guarded(verifier: TokenVerifier, metrics: Metrics) -> BearerAuthMiddleware:
    app = Starlette(routes=[Route("/orders", orders), Route("/write", write_orders)])
    return BearerAuthMiddleware(
        app, verifier=verifier, manage_verifier=False, on_decision=metrics.on_decision
    )


# -- decisions ------------------------------------------------------------------------------


async def test_decisions_are_counted_by_outcome_reason_status_and_decider(
    fake: FakeIssuer, verifier: TokenVerifier, metrics: Metrics, reader: InMemoryMetricReader
) -> None:
    app = guarded(verifier, metrics)
    token = fake.mint(scopes="orders:read")
    assert (await asgi_client.call(app, headers=bearer(token))).status == 200
    assert (await asgi_client.call(app, headers=bearer(token))).status == 200
    assert (await asgi_client.call(app, headers=bearer(fake.mint_expired()))).status == 401
    assert (await asgi_client.call(app)).status == 401
    assert (await asgi_client.call(app, path="/write", headers=bearer(token))).status == 403

    assert values(reader, "resource_guard.decisions") == {
        labels(outcome="allowed", reason="verified", decided_by="middleware"): 1,
        labels(outcome="allowed", reason="cached", decided_by="middleware"): 2,
        labels(outcome="refused", reason="token_expired", status=401, decided_by="middleware"): 1,
        labels(outcome="refused", reason="missing_token", status=401, decided_by="middleware"): 1,
        labels(outcome="refused", reason="insufficient_scope", status=403, decided_by="route"): 1,
    }


async def test_the_middleware_s_decisions_are_timed_a_route_s_are_not(
    fake: FakeIssuer, verifier: TokenVerifier, metrics: Metrics, reader: InMemoryMetricReader
) -> None:
    app = guarded(verifier, metrics)
    token = fake.mint(scopes="orders:read")
    await asgi_client.call(app, headers=bearer(token))
    await asgi_client.call(app, path="/write", headers=bearer(token))  # cached, then refused
    await asgi_client.call(app)

    assert values(reader, "resource_guard.verify.duration") == {
        labels(outcome="allowed", reason="verified"): 1,
        labels(outcome="allowed", reason="cached"): 1,
        labels(outcome="refused", reason="missing_token"): 1,
    }
    point = points(reader, "resource_guard.verify.duration")[
        labels(outcome="allowed", reason="verified")
    ]
    assert isinstance(point, HistogramDataPoint)
    assert 0 < point.sum < 5
    assert tuple(point.explicit_bounds) == DURATION_BUCKETS


def test_no_attribute_carries_the_path_or_the_caller(
    metrics: Metrics, reader: InMemoryMetricReader
) -> None:
    decision = Decision(
        "allowed",
        "verified",
        None,
        "GET",
        "/orders/123",
        client_id="svc",
        subject="u1",
        duration=0.001,
    )
    metrics.on_decision(decision)
    for name in ("resource_guard.decisions", "resource_guard.verify.duration"):
        keys = {key for attributes in points(reader, name) for key, _ in attributes}
        assert keys <= {"outcome", "reason", "status", "decided_by"}


def test_a_decision_without_a_duration_is_counted_not_timed(
    metrics: Metrics, reader: InMemoryMetricReader
) -> None:
    metrics.on_decision(Decision("refused", "missing_token", 401, "GET", "/orders"))
    assert len(values(reader, "resource_guard.decisions")) == 1
    assert values(reader, "resource_guard.verify.duration") == {}


def test_without_a_provider_the_global_one_is_used() -> None:
    """The global provider is a no-op until the application sets one: nothing fails."""
    Metrics().on_decision(Decision("refused", "missing_token", 401, "GET", "/", duration=0.1))


# -- the key source -------------------------------------------------------------------------


async def test_jwks_fetches_are_counted_and_timed_by_outcome(
    fake: FakeIssuer, verifier: TokenVerifier, metrics: Metrics, reader: InMemoryMetricReader
) -> None:
    metrics.watch(verifier)
    async with verifier:
        fake.fault("status", endpoint="jwks", status=503)
        assert await verifier.key_source.refresh() is False

    issuer = fake.issuer
    assert values(reader, "resource_guard.jwks.fetches") == {
        labels(issuer=issuer, outcome="ok"): 1,
        labels(issuer=issuer, outcome="failure", failure="outage"): 1,
    }
    assert values(reader, "resource_guard.jwks.fetch.duration") == {
        labels(issuer=issuer, outcome="ok"): 1,
        labels(issuer=issuer, outcome="failure", failure="outage"): 1,
    }


async def test_gauges_report_key_count_age_and_usability(
    fake: FakeIssuer, verifier: TokenVerifier, metrics: Metrics, reader: InMemoryMetricReader
) -> None:
    metrics.watch(verifier)
    issuer = labels(issuer=fake.issuer)
    assert values(reader, "resource_guard.jwks.keys") == {issuer: 0}
    assert values(reader, "resource_guard.jwks.usable") == {issuer: 0}
    assert values(reader, "resource_guard.jwks.age") == {}  # nothing fetched: no point

    async with verifier:
        assert values(reader, "resource_guard.jwks.keys") == {issuer: 1}
        assert values(reader, "resource_guard.jwks.usable") == {issuer: 1}
        age = values(reader, "resource_guard.jwks.age")[issuer]
        assert 0 <= age < 60


async def test_watching_twice_counts_once_and_unwatch_stops_reporting(
    fake: FakeIssuer, verifier: TokenVerifier, metrics: Metrics, reader: InMemoryMetricReader
) -> None:
    metrics.watch(verifier)
    metrics.watch(verifier)
    async with verifier:
        metrics.unwatch(verifier)
        metrics.unwatch(verifier)  # not watched any more: nothing happens
        await verifier.key_source.refresh()
    assert values(reader, "resource_guard.jwks.fetches") == {
        labels(issuer=fake.issuer, outcome="ok"): 1
    }
    assert values(reader, "resource_guard.jwks.keys") == {}


async def test_another_verifier_of_the_same_issuer_replaces_the_first(
    fake: FakeIssuer, verifier: TokenVerifier, metrics: Metrics, reader: InMemoryMetricReader
) -> None:
    second = TokenVerifier(fake.issuer, ORDERS_AUDIENCE, http_client=fake.async_client())
    metrics.watch(verifier)
    metrics.watch(second)
    metrics.unwatch(verifier)  # not the one watched now: nothing happens
    async with verifier, second:
        pass
    assert values(reader, "resource_guard.jwks.fetches") == {
        labels(issuer=fake.issuer, outcome="ok"): 1
    }
    assert values(reader, "resource_guard.jwks.keys") == {labels(issuer=fake.issuer): 1}


# -- without OpenTelemetry ------------------------------------------------------------------


def test_without_opentelemetry_the_import_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    monkeypatch.delitem(sys.modules, "resource_guard.otel")
    with pytest.raises(ImportError, match=r"pip install 'resource-guard\[otel\]'"):
        importlib.import_module("resource_guard.otel")
