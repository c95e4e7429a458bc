"""The beacon: registers a worker with web, heartbeats, lands, retires and drains.

A library on purpose: `airside worker` embeds it, and the chart's preStop hook, the BOSH drain script
and compose's stop signal reach it through the signal mapping in `airside.worker.signals`. It needs
only a web client and a `Work` view of what the worker is running.

Contract:
- `register()` retries until web answers (web may start after the worker); it is idempotent.
- `heartbeat_once()` re-registers by itself when web no longer knows the worker (a pruned record, a
  web whose database was replaced) and re-asserts a drain that was under way.
- `drain(action)` tells web (land → landing, retire → retiring; web gives the worker no new work from
  then on), waits until `Work.active()` is 0 or the drain timeout passes — then running work is
  interrupted with the reason — and reports the end (landed, or removed from the registry).
- A 409 on heartbeat means another process registered under this name with a newer boot epoch:
  `DuplicateWorker` is raised and the worker must stop.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from airside.core import log
from airside.core.client import WebClient, WebError, WebUnreachable
from airside.core.schemas import Heartbeat, Worker, WorkerRegistration, WorkerState
from airside.worker.signals import Action

LOG = log.get("airside.worker.beacon")


class Work(Protocol):
    """What the beacon needs to know about the worker's running work."""

    def active(self) -> int: ...  # tasks still running
    def counts(self) -> tuple[int, int]: ...  # (containers, volumes)
    def interrupt(self, reason: str) -> None: ...  # end running work, errored with this reason


class NoWork:
    def active(self) -> int:
        return 0

    def counts(self) -> tuple[int, int]:
        return 0, 0

    def interrupt(self, reason: str) -> None:
        pass


class DuplicateWorker(Exception):
    pass


class Beacon:
    def __init__(
        self,
        client: WebClient,
        registration: WorkerRegistration,
        *,
        heartbeat_interval: float = 10.0,
        drain_timeout: float = 300.0,
        work: Work | None = None,
        state_file: Path | None = None,
    ) -> None:
        self.client, self.reg = client, registration
        self.interval, self.drain_timeout = heartbeat_interval, drain_timeout
        self.work = work or NoWork()
        self.draining: Action | None = None
        self.state_file = state_file
        self._state: WorkerState | None = None
        self._stop_heartbeats = threading.Event()
        self._forget_state()  # a file left by an earlier process says nothing about this one

    @property
    def state(self) -> WorkerState | None:
        """The worker's state as web last answered it. With a state_file, the file holds it (one word and a
        newline: running, landing, ...) for probes that cannot ask web (`grep -qx running FILE` is the
        chart's readiness probe and compose's healthcheck); `close` removes it."""
        return self._state

    @state.setter
    def state(self, value: WorkerState) -> None:
        changed, self._state = value != self._state, value
        if changed and self.state_file is not None:
            tmp = self.state_file.with_name(self.state_file.name + ".tmp")
            try:
                tmp.write_text(f"{value}\n")
                os.replace(tmp, self.state_file)
            except OSError as e:
                LOG.warning("could not write the state file", path=str(self.state_file), error=str(e))

    def _forget_state(self) -> None:
        if self.state_file is not None:
            with contextlib.suppress(FileNotFoundError):
                self.state_file.unlink()

    def close(self) -> None:
        """The worker process ends: it is no longer anything a probe should trust."""
        self._forget_state()

    @property
    def name(self) -> str:
        return self.reg.name

    # --- registration and heartbeats ------------------------------------------------------------
    def _snapshot(self) -> dict[str, int]:
        containers, volumes = self.work.counts()
        return {"active_containers": containers, "active_volumes": volumes, "active_tasks": self.work.active()}

    def register(self, stop: threading.Event | None = None) -> Worker:
        stop = stop or threading.Event()
        delay = min(1.0, self.interval)
        while True:
            try:
                worker = self.client.register(self.reg.model_copy(update=self._snapshot()))
                self.state = worker.state
                LOG.info("registered", worker=self.name, state=str(worker.state), boot_epoch=self.reg.boot_epoch)
                if self.draining and worker.state == WorkerState.running:
                    self._tell_web(self.draining)  # web forgot us mid-drain: say it again
                return worker
            except WebUnreachable as e:
                LOG.warning("web unreachable, will retry", error=e.message, retry_in=delay)
            except WebError as e:
                if e.status == 409:
                    raise DuplicateWorker(e.message) from e
                if e.status in (400, 401, 403, 413, 422):
                    raise
                LOG.warning("registration failed, will retry", error=e.message)
            if stop.wait(delay):
                raise InterruptedError("stopped before registering")
            delay = min(delay * 2, max(self.interval, 1.0))

    def heartbeat_once(self) -> Worker | None:
        try:
            worker = self.client.heartbeat(self.name, Heartbeat(boot_epoch=self.reg.boot_epoch, **self._snapshot()))
        except WebUnreachable as e:
            LOG.warning("heartbeat failed: web unreachable", error=e.message)
            return None
        except WebError as e:
            if e.status == 404:
                LOG.info("web does not know this worker; registering again", worker=self.name)
                return self.register(self._stop_heartbeats)
            if e.status == 409:
                raise DuplicateWorker(e.message) from e
            LOG.warning("heartbeat refused", status=e.status, error=e.message)
            return None
        self.state = worker.state
        return worker

    def heartbeat_loop(self, on_state: Callable[[WorkerState], None] | None = None) -> None:
        """Heartbeats until stop_heartbeats(); calls on_state(state) after each answer."""
        while not self._stop_heartbeats.wait(self.interval):
            try:
                worker = self.heartbeat_once()
            except InterruptedError:
                return
            if worker is not None and on_state is not None:
                on_state(worker.state)

    def stop_heartbeats(self) -> None:
        self._stop_heartbeats.set()

    # --- draining ---------------------------------------------------------------------------------
    def _tell_web(self, action: Action, deadline: float | None = None) -> None:
        call = self.client.land if action == Action.land else self.client.retire
        while True:
            try:
                self.state = call(self.name).state
                return
            except WebUnreachable as e:
                if deadline is not None and time.monotonic() > deadline:
                    LOG.error("could not tell web about the drain", action=str(action), error=e.message)
                    return
                LOG.warning("web unreachable while draining, will retry", error=e.message)
                time.sleep(1.0)

    def drain(self, action: Action, stop_now: threading.Event | None = None) -> bool:
        """Lands or retires. Returns True when running work finished by itself."""
        stop_now = stop_now or threading.Event()
        self.draining = action
        deadline = time.monotonic() + self.drain_timeout
        LOG.info("draining", worker=self.name, action=str(action), running=self.work.active(),
                 timeout=self.drain_timeout)
        self._tell_web(action, deadline)
        while self.work.active() > 0 and time.monotonic() < deadline and not stop_now.is_set():
            stop_now.wait(0.2)
        clean = self.work.active() == 0
        if not clean:
            why = "stopped" if stop_now.is_set() else f"drain timeout ({self.drain_timeout:g}s) passed"
            reason = f"worker {self.name} was {'landing' if action == Action.land else 'retiring'} and {why}"
            LOG.warning("interrupting running work", worker=self.name, running=self.work.active(), reason=reason)
            self.work.interrupt(reason)
        self.stop_heartbeats()
        self.finish(action, deadline=time.monotonic() + (5.0 if stop_now.is_set() else 30.0))
        return clean

    def finish(self, action: Action, deadline: float) -> None:
        while True:
            try:
                if action == Action.land:
                    self.state = self.client.landed(self.name, self.reg.boot_epoch).state
                    LOG.info("landed", worker=self.name)
                else:
                    self.client.delete(self.name, self.reg.boot_epoch)
                    LOG.info("retired", worker=self.name)
                return
            except WebUnreachable as e:
                if time.monotonic() > deadline:
                    LOG.error("could not report the end of the drain; web will see the worker stall",
                              error=e.message)
                    return
                time.sleep(0.5)
            except WebError as e:
                LOG.error("web refused the end of the drain", status=e.status, error=e.message)
                return
