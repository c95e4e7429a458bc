"""The web service: everything one web process holds, and its background loops.

`Web(settings, clock)` opens the database engine and session factory, the authenticator, the metrics and
the artifact store, and (with the Kubernetes runtime configured) the Kubernetes dispatcher. It runs no
loop until `background()` is called inside the event loop that serves the API: then the registry sweep
runs every `sweep_interval` and the scheduler every second or as soon as `wake_scheduler()` asks.

The routers reach the one Web of an app through `airside.web.deps.get_web` (`app.state.web`); the
composition root (`airside.web.app`) builds it. This module imports no router and not the app.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from airside.config import Settings
from airside.core import log
from airside.web import builds, db, plans, registry
from airside.web.artifacts import ArtifactStore
from airside.web.auth import Authenticator
from airside.web.db import BuildRow
from airside.web.metrics import Metrics

if TYPE_CHECKING:
    from airside.web.kube_dispatch import KubeDispatcher

LOG = log.get("airside.web")


class Web:
    """Everything one web process holds: engine, session factory, authenticator, metrics."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self.settings, self.clock = settings, clock
        self.engine = db.make_engine(settings.resolved_database_url)
        self.sessions = db.sessions(self.engine)
        self.auth = Authenticator(settings)
        self.metrics = Metrics(self.sessions)
        self.artifacts = ArtifactStore(settings.data_dir / "artifacts")
        self._wake: asyncio.Event | None = None
        self._placed: asyncio.Event | None = None  # set when this process placed builds: wakes long-polls
        self._event_loop: asyncio.AbstractEventLoop | None = None
        self.started_at = clock()
        self.kubernetes: KubeDispatcher | None = None
        if settings.runtime == "kubernetes" or settings.kubernetes_artifact_url:
            from airside.web.kube_dispatch import KubeDispatcher

            self.kubernetes = KubeDispatcher(self)

    def tx(self) -> contextlib.AbstractContextManager[Session]:
        return db.transaction(self.sessions)

    def sweep_once(self) -> tuple[list[str], list[str]]:
        now = self.clock()
        if now - self.started_at < self.settings.heartbeat_ttl:
            # web itself was away: give every worker one TTL to reach this process before calling it stalled
            # (silent workers still get no new work meanwhile: scheduling checks heartbeat freshness itself)
            return [], []
        with self.tx() as s:
            result = registry.sweep(s, now, self.settings.heartbeat_ttl, self.settings.stalled_prune_after)
        with self.sessions() as s:
            expired = [b.id for b in s.query(BuildRow.id).filter(BuildRow.finished_at < now - self.settings.artifact_ttl)]
        for build_id in expired:
            self.artifacts.delete(build_id)
        return result

    def schedule_once(self) -> list[tuple[int, str]]:
        with self.tx() as s:
            plans.tick(s, self.clock(), self)
        with self.tx() as s:
            placed = builds.schedule(s, self.clock(), self.settings.heartbeat_ttl, self.settings.scheduler_strategy)
            for build_id, _worker in placed:
                b = s.get(BuildRow, build_id)
                if b is not None and b.queued_at is not None:
                    self.metrics.queue_wait.observe(max(0.0, self.clock() - b.queued_at))
        if placed:
            self.assignments_changed()
        if self.kubernetes is not None:
            self.kubernetes.tick()
        return placed

    def assignments_changed(self) -> None:
        """Wakes the workers' long-polls waiting in this process (callable from any thread)."""
        if self._event_loop is not None:
            self._event_loop.call_soon_threadsafe(self._pulse)

    def _pulse(self) -> None:
        ev, self._placed = self._placed, asyncio.Event()
        if ev is not None:
            ev.set()

    async def assignment_change(self, timeout: float) -> None:
        """Waits until this process changes assignments, or `timeout` passes (other web replicas change them
        too, so callers re-read the database after either)."""
        ev = self._placed
        if ev is None:
            await asyncio.sleep(timeout)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ev.wait(), timeout)

    def wake_scheduler(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def observe_check_lag(self, seconds: float) -> None:
        self.metrics.check_lag.observe(max(0.0, seconds))

    def observe_finished(self, b: BuildRow) -> None:
        self.metrics.observe_build(b)

    async def _loop(self, what: str, fn: Callable[[], object], interval: float, wake: asyncio.Event | None = None) -> None:
        while True:
            try:
                await asyncio.to_thread(fn)
            except Exception:  # noqa: BLE001 - a failed round must not kill the loop; log and retry
                LOG.exception(f"{what} failed")
            if wake is None:
                await asyncio.sleep(interval)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), interval)
            wake.clear()

    def background(self) -> list[asyncio.Task[None]]:
        """Starts the sweep and scheduler loops in the running event loop; the caller cancels the tasks."""
        self._wake, self._placed = asyncio.Event(), asyncio.Event()
        self._event_loop = asyncio.get_running_loop()
        return [asyncio.create_task(self._loop("registry sweep", self.sweep_once, self.settings.sweep_interval)),
                asyncio.create_task(self._loop("scheduler", self.schedule_once, 1.0, self._wake))]
