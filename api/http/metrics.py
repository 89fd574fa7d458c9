"""``/metrics``: Prometheus counters and histograms of one service, in its own registry.

With several workers (``serve --workers N``) each process writes its values to files in
``PROMETHEUS_MULTIPROC_DIR`` and a scrape, whichever worker answers it, reads them all:
prometheus_client's multiprocess mode, so the counters are the service's, not a worker's.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from api.http.workers import MULTIPROC_ENV
from ledger.events import RESERVED_PREFIXES, Event
from ledger.log import EventLog

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class _ProjectionLag(Collector):
    """How many events each projection is behind the head (read at scrape time)."""

    def __init__(self, log: EventLog) -> None:
        self.log = log

    def collect(self) -> Iterator[Metric]:
        fam = GaugeMetricFamily(
            "cap_projection_lag_events",
            "events between the log head and a projection's checkpoint",
            labels=["projection"],
        )
        with self.log.store.read() as txn:
            head = self.log.head().seq
            for c in self.log.consumers:
                fam.add_metric([c.name], max(0, head - self.log.checkpoint(txn, c.name)))
        yield fam


class Metrics:
    """The service's metrics; events are counted from the log's commit listener."""

    def __init__(self, log: EventLog) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.events_appended = Counter(
            "cap_events_appended", "events committed by this service", ["type"], registry=r
        )
        self.append_latency = Histogram(
            "cap_append_latency_seconds",
            "time from submitting an append to it being durable",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.http_requests = Counter(
            "cap_http_requests", "HTTP requests", ["route", "method", "status"], registry=r
        )
        self.http_latency = Histogram(
            "cap_http_request_duration_seconds",
            "time to produce a response (streams: the whole stream)",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.sandbox_runs = Counter(
            "cap_sandbox_runs", "verifier sandbox runs by outcome", ["outcome"], registry=r
        )
        self.stream_clients_dropped = Counter(
            "cap_stream_clients_dropped", "event-stream clients dropped for being slow", registry=r
        )
        self._lag = _ProjectionLag(log)
        r.register(self._lag)

    def on_commit(self, events: list[Event]) -> None:
        """Log listener (writer thread): count committed events by type."""
        for ev in events:
            self.events_appended.labels(_type_family(ev.type)).inc()

    def render(self) -> bytes:
        if not os.environ.get(MULTIPROC_ENV):
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        MultiProcessCollector(merged)  # every worker's counters and histograms, summed
        merged.register(self._lag)
        return generate_latest(merged)


def _type_family(type_: str) -> str:
    """Reserved types are counted as they are, user types together as ``user``, so label
    cardinality stays bounded whatever users append."""
    return type_ if type_.startswith(RESERVED_PREFIXES) else "user"
