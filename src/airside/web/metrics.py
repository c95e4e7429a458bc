"""Prometheus metrics read from the database at scrape time (so every web replica agrees)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session, sessionmaker

from airside.core.schemas import WorkerState
from airside.web import registry


class RegistryCollector(Collector):
    def __init__(self, factory: sessionmaker[Session], clock: Callable[[], float] = time.time) -> None:
        self.factory, self.clock = factory, clock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self.factory() as s:
            rows = registry.all_workers(s)
        now = self.clock()
        by_state = GaugeMetricFamily("airside_workers", "Workers in the registry by state.", labels=["state"])
        counts = {str(st): 0 for st in WorkerState}
        for r in rows:
            counts[r.state] = counts.get(r.state, 0) + 1
        for st, n in counts.items():
            by_state.add_metric([st], n)
        yield by_state
        age = GaugeMetricFamily(
            "airside_worker_heartbeat_age_seconds", "Seconds since each worker's last heartbeat.", labels=["worker", "state"]
        )
        for r in rows:
            age.add_metric([r.name, r.state], max(0.0, now - r.last_heartbeat))
        yield age


class Metrics:
    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(RegistryCollector(factory))
        self.heartbeats = Counter("airside_heartbeats", "Worker heartbeats received.", registry=self.registry)
        self.requests = Counter(
            "airside_http_requests", "HTTP requests by route and status.", ["route", "status"], registry=self.registry
        )
