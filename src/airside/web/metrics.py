"""Prometheus metrics read from the database at scrape time (so every web replica agrees)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session, sessionmaker

from airside.core.schemas import WorkerState
from airside.web import builds, registry
from airside.web.db import BuildRow


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
        with self.factory() as s:
            pending = builds.pending_count(s)
        yield GaugeMetricFamily("airside_tasks_pending", "Builds queued for a worker (add workers when this grows).",
                                value=pending)


PHASES = [  # (metric suffix, from, to)
    ("queue_wait", "queued_at", "placed_at"),
    ("image", "placed_at", "image_ready_at"),
    ("inputs", "image_ready_at", "inputs_ready_at"),
    ("start", "inputs_ready_at", "started_at"),
    ("run", "started_at", "finished_at"),
    ("total", "created_at", "finished_at"),
]
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


class Metrics:
    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(RegistryCollector(factory))
        self.phase = Histogram("airside_build_phase_seconds", "Seconds builds spent in each phase.", ["phase"],
                               buckets=BUCKETS, registry=self.registry)
        self.queue_wait = Histogram("airside_build_queue_wait_seconds", "Seconds from queued to placed on a worker.",
                                    buckets=BUCKETS, registry=self.registry)
        self.finished = Counter("airside_builds_finished", "Finished builds by status.", ["status"],
                                registry=self.registry)
        self.check_lag = Histogram("airside_check_lag_seconds",
                                   "Seconds a resource check started after it was due (check_every).",
                                   buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
                                   registry=self.registry)
        self.heartbeats = Counter("airside_heartbeats", "Worker heartbeats received.", registry=self.registry)
        self.requests = Counter(
            "airside_http_requests", "HTTP requests by route and status.", ["route", "status"], registry=self.registry
        )

    def observe_build(self, b: BuildRow) -> None:
        self.finished.labels(b.status).inc()
        for name, start, end in PHASES:
            t0, t1 = getattr(b, start), getattr(b, end)
            if t0 is not None and t1 is not None:
                self.phase.labels(name).observe(max(0.0, t1 - t0))
