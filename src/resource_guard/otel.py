"""Metrics with OpenTelemetry: decisions, verification latency and the JWKS key source.

```python
from resource_guard.otel import Metrics

metrics = Metrics()                   # the global MeterProvider, or meter_provider=...
metrics.watch(verifier)               # JWKS fetches, key count, key age, usable
app.add_middleware(BearerAuthMiddleware, verifier=verifier, on_decision=metrics.on_decision)
```

Only the ``opentelemetry-api`` package is used (``pip install 'resource-guard[otel]'``);
the application chooses the SDK and the exporter (Prometheus, OTLP...). Attributes are
bounded sets (outcome, reason code, status, issuer): never the request path, the client
or the subject, whose values are unbounded. docs/operations.md lists the instruments.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from threading import Lock

try:
    from opentelemetry import metrics as otel_metrics
    from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
except ImportError as exc:
    raise ImportError(
        "resource_guard.otel needs the OpenTelemetry API: pip install 'resource-guard[otel]'"
    ) from exc

from . import __version__
from ._decisions import Decision
from ._jwks import KeyFetch, RemoteKeySource
from ._verifier import TokenVerifier

__all__ = ["DURATION_BUCKETS", "Metrics"]

DURATION_BUCKETS: tuple[float, ...] = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""Bucket boundaries (seconds) advised for the duration histograms: a cached token is
decided in microseconds, a verified one in about a millisecond, a JWKS fetch in up to
``timeout`` (5 s)."""

_Attributes = dict[str, str | int]


class Metrics:
    """OpenTelemetry instruments for one application (see docs/operations.md).

    ``meter_provider``: where the instruments live; None takes the global provider
    (``opentelemetry.metrics.set_meter_provider``), a no-op until one is set.

    * :meth:`on_decision` is an ``on_decision`` hook for
      :class:`~resource_guard.BearerAuthMiddleware`: it counts decisions and records how
      long the middleware took to decide. To keep a hook of your own as well, pass
      ``on_decision=lambda d: (metrics.on_decision(d), mine(d))``.
    * :meth:`watch` adds a verifier's key source: fetches counted and timed, and gauges of
      its key count, key age and usability, by ``issuer``.
    """

    def __init__(self, meter_provider: MeterProvider | None = None) -> None:
        provider = otel_metrics.get_meter_provider() if meter_provider is None else meter_provider
        meter = provider.get_meter("resource_guard", __version__)
        self._decisions = meter.create_counter(
            "resource_guard.decisions",
            unit="{decision}",
            description="Requests allowed or refused, by outcome, reason, status, decided_by.",
        )
        self._verify_duration = meter.create_histogram(
            "resource_guard.verify.duration",
            unit="s",
            description="Seconds from a request's arrival to the middleware's decision.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self._fetches = meter.create_counter(
            "resource_guard.jwks.fetches",
            unit="{fetch}",
            description="JWKS fetch attempts (discovery included), by issuer and outcome.",
        )
        self._fetch_duration = meter.create_histogram(
            "resource_guard.jwks.fetch.duration",
            unit="s",
            description="Seconds one JWKS fetch attempt took.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self._lock = Lock()
        self._sources: dict[str, tuple[RemoteKeySource, Callable[[KeyFetch], None]]] = {}
        meter.create_observable_gauge(
            "resource_guard.jwks.keys",
            callbacks=[self._observe_keys],
            unit="{key}",
            description="Verification keys cached for the issuer.",
        )
        meter.create_observable_gauge(
            "resource_guard.jwks.age",
            callbacks=[self._observe_age],
            unit="s",
            description="Seconds since the cached keys were fetched.",
        )
        meter.create_observable_gauge(
            "resource_guard.jwks.usable",
            callbacks=[self._observe_usable],
            unit="1",
            description="1 while cached keys may verify tokens (stale ones included), else 0.",
        )

    # -- decisions -------------------------------------------------------------------

    def on_decision(self, decision: Decision) -> None:
        """Count ``decision``; time it when the middleware decided (a route's refusal
        comes after the application ran, so its duration says nothing of verification)."""
        attributes: _Attributes = {
            "outcome": decision.outcome,
            "reason": decision.reason,
            "decided_by": decision.decided_by,
        }
        if decision.status is not None:
            attributes["status"] = decision.status
        self._decisions.add(1, attributes)
        if decision.duration is not None and decision.decided_by == "middleware":
            self._verify_duration.record(
                decision.duration, {"outcome": decision.outcome, "reason": decision.reason}
            )

    # -- key sources -----------------------------------------------------------------

    def watch(self, verifier: TokenVerifier) -> None:
        """Report ``verifier``'s key source, labelled with its ``issuer``: its fetches as
        they end, its keys whenever the metrics are collected. Watching it again changes
        nothing; watching another source of the same issuer replaces the first."""
        source = verifier.key_source
        issuer = source.issuer

        def listen(fetch: KeyFetch) -> None:
            self._record_fetch(issuer, fetch)

        with self._lock:
            previous = self._sources.get(issuer)
            if previous is not None and previous[0] is source:
                return
            self._sources[issuer] = (source, listen)
        if previous is not None:
            previous[0].remove_listener(previous[1])
        source.add_listener(listen)

    def unwatch(self, verifier: TokenVerifier) -> None:
        """Stop reporting ``verifier``'s key source (nothing happens when not watched)."""
        source = verifier.key_source
        with self._lock:
            watched = self._sources.get(source.issuer)
            if watched is None or watched[0] is not source:
                return
            del self._sources[source.issuer]
        source.remove_listener(watched[1])

    def _record_fetch(self, issuer: str, fetch: KeyFetch) -> None:
        attributes: _Attributes = {"issuer": issuer, "outcome": "ok" if fetch.ok else "failure"}
        if fetch.failure is not None:
            attributes["failure"] = fetch.failure
        self._fetches.add(1, attributes)
        self._fetch_duration.record(fetch.duration, attributes)

    def _watched(self) -> list[tuple[str, RemoteKeySource]]:
        with self._lock:
            return [(issuer, source) for issuer, (source, _) in self._sources.items()]

    def _observe_keys(self, options: CallbackOptions) -> Iterable[Observation]:
        for issuer, source in self._watched():
            yield Observation(len(source.status().keys), {"issuer": issuer})

    def _observe_age(self, options: CallbackOptions) -> Iterable[Observation]:
        for issuer, source in self._watched():
            age = source.status().age
            if age is not None:  # nothing fetched yet: no point rather than a false 0
                yield Observation(age, {"issuer": issuer})

    def _observe_usable(self, options: CallbackOptions) -> Iterable[Observation]:
        for issuer, source in self._watched():
            yield Observation(1 if source.status().usable else 0, {"issuer": issuer})
