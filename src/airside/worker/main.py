"""`airside worker`: one process holding the beacon (and, with later issues, the volume server,
runtime and reaper). Signals drive its lifecycle through `airside.worker.signals`."""

from __future__ import annotations

import queue
import signal
import threading

import httpx

import airside
from airside.config import Settings, secret
from airside.core import auth, log
from airside.core.client import WebClient, WebError
from airside.core.schemas import WorkerRegistration, WorkerState
from airside.worker import epoch
from airside.worker.beacon import Beacon, DuplicateWorker, Work
from airside.worker.signals import HANDLED, Action, action_for

LOG = log.get("airside.worker")


class ConfigError(Exception):
    pass


def worker_auth(settings: Settings) -> httpx.Auth:
    if settings.worker_key:
        return auth.WorkerKeyAuth(auth.load_private_key(settings.worker_key), settings.worker_name)
    token = secret(settings.worker_token)
    if token is None and (settings.data_dir / "worker-token").exists():  # quickstart: web and worker share data_dir
        token = (settings.data_dir / "worker-token").read_text().strip()
    if not token:
        raise ConfigError(
            "no worker credentials: set AIRSIDE_WORKER_TOKEN (or --worker-token) to web's worker token, "
            "or AIRSIDE_WORKER_KEY to a private key made by `airside keygen`"
        )
    return auth.BearerAuth(token)


def registration(settings: Settings, boot_epoch: str) -> WorkerRegistration:
    return WorkerRegistration(
        name=settings.worker_name,
        platform=settings.platform,
        tags=settings.tags,
        team=settings.team,
        version=airside.__version__,
        baggageclaim_url=settings.baggageclaim_url,
        runtime_url=settings.runtime_url,
        boot_epoch=boot_epoch,
        ephemeral=settings.ephemeral,
    )


def run(settings: Settings, work: Work | None = None) -> int:
    work_dir = settings.resolved_work_dir
    boot_epoch, fresh = epoch.load_or_create(work_dir)
    LOG.info("worker starting", worker=settings.worker_name, boot_epoch=boot_epoch, new_epoch=fresh,
             work_dir=str(work_dir), ephemeral=settings.ephemeral)
    client = WebClient(settings.web_url, auth=worker_auth(settings))
    beacon = Beacon(client, registration(settings, boot_epoch), heartbeat_interval=settings.heartbeat_interval,
                    drain_timeout=settings.drain_timeout, work=work)

    actions: queue.Queue[Action | Exception] = queue.Queue()
    stop_now, registered, stop_registering = threading.Event(), threading.Event(), threading.Event()
    pending: list[Action] = []

    def on_signal(signum: int, _frame: object) -> None:
        draining = beacon.draining is not None or bool(pending)
        action = action_for(signum, ephemeral=settings.ephemeral, draining=draining)
        LOG.info("signal", signal=signal.Signals(signum).name, action=str(action))
        if action == Action.stop_now:
            stop_now.set()
            stop_registering.set()
            return
        if not registered.is_set():
            stop_registering.set()
        pending.append(action)
        actions.put(action)

    for s in HANDLED:
        signal.signal(s, on_signal)

    try:
        beacon.register(stop_registering)
    except InterruptedError:
        LOG.info("stopped before registering")
        return 0
    except DuplicateWorker as e:
        LOG.error("another worker holds this name", error=str(e))
        return 3
    except WebError as e:
        LOG.error("web refused the registration", error=e.message)
        return 2
    registered.set()

    def on_state(state: WorkerState) -> None:  # an operator ran land-worker / retire-worker
        if beacon.draining is None and not pending:
            if state == WorkerState.landing:
                actions.put(Action.land)
            elif state == WorkerState.retiring:
                actions.put(Action.retire)

    def heartbeats() -> None:
        try:
            beacon.heartbeat_loop(on_state)
        except DuplicateWorker as e:
            actions.put(e)

    threading.Thread(target=heartbeats, name="heartbeat", daemon=True).start()
    try:
        while True:
            try:
                item = actions.get(timeout=0.5)
                break
            except queue.Empty:
                continue
        if isinstance(item, Exception):
            LOG.error("stopping: another process registered under this name", error=str(item))
            return 3
        beacon.drain(item, stop_now)
        return 0
    finally:
        beacon.stop_heartbeats()
        client.close()
