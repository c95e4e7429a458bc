"""`airside worker`: one process holding the beacon (and, with later issues, the volume server,
runtime and reaper). Signals drive its lifecycle through `airside.worker.signals`."""

from __future__ import annotations

import json
import queue
import re
import signal
import threading
from pathlib import Path

import httpx

import airside
from airside.baggageclaim.errors import DriverUnavailable, VolumeError
from airside.baggageclaim.server import BackgroundServer
from airside.config import Settings, secret
from airside.core import auth, log, routes
from airside.core.client import WebClient, WebError
from airside.core.schemas import (
    Assignment,
    ReaperAnswer,
    ReaperReport,
    ReportedObject,
    ResourceType,
    WorkerRegistration,
    WorkerState,
)
from airside.runtime import RuntimeError_, get_runtime
from airside.runtime.net import NetworkConfig
from airside.worker import epoch
from airside.worker.beacon import Beacon, DuplicateWorker, Work
from airside.worker.signals import HANDLED, Action, action_for
from airside.worker.tasks import Tasks

LOG = log.get("airside.worker")
CONTAINER_RE = re.compile(r"^b(\d+)\.(\d+)$")


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


def web_client(settings: Settings, timeout: float = 10.0) -> WebClient:
    try:
        return WebClient(settings.web_url, auth=worker_auth(settings), timeout=timeout, ca_file=settings.tls_ca_file)
    except WebError as e:
        raise ConfigError(e.message) from e


def load_resource_types(directory: Path | None) -> list[ResourceType]:
    """The resource types in `directory`, as Concourse workers bundle theirs: `<dir>/<type>/
    resource_metadata.json` names the type, `<dir>/<type>/rootfs` is its image. Entries that are not
    usable are skipped with a warning (the worker still starts); a missing directory is a ConfigError."""
    if directory is None:
        return []
    if not directory.is_dir():
        raise ConfigError(f"resource_types_dir {directory} is not a directory (AIRSIDE_RESOURCE_TYPES_DIR; "
                          f"tools/resources/build.sh DIR makes one)")
    found: dict[str, ResourceType] = {}
    for meta_file in sorted(directory.glob("*/resource_metadata.json")):
        rootfs = meta_file.parent / "rootfs"
        try:
            meta = json.loads(meta_file.read_text())
            rt = ResourceType(type=meta["type"], image=str(rootfs))
        except (OSError, ValueError, KeyError, TypeError) as e:  # pydantic's ValidationError is a ValueError
            LOG.warning("skipping a resource type: unreadable metadata", file=str(meta_file), error=str(e))
            continue
        if not (rootfs / "opt" / "resource" / "check").exists():
            LOG.warning("skipping a resource type: no rootfs/opt/resource/check", type=rt.type, dir=str(meta_file.parent))
            continue
        if rt.type in found:
            LOG.warning("skipping a resource type: the name is taken", type=rt.type, dir=str(meta_file.parent))
            continue
        found[rt.type] = rt
    types = list(found.values())[:256]
    LOG.info("resource types", dir=str(directory), types=[t.type for t in types])
    return types


def registration(settings: Settings, boot_epoch: str, baggageclaim_url: str = "", volume_driver: str = "",
                 runtime: str = "", resource_types: list[ResourceType] | None = None) -> WorkerRegistration:
    return WorkerRegistration(
        name=settings.worker_name,
        platform=settings.platform,
        tags=settings.tags,
        team=settings.team,
        version=airside.__version__,
        baggageclaim_url=settings.baggageclaim_url or baggageclaim_url,
        runtime_url=settings.runtime_url,
        boot_epoch=boot_epoch,
        ephemeral=settings.ephemeral,
        max_tasks=settings.max_concurrent_tasks,
        volume_driver=volume_driver,
        runtime=runtime,
        resource_types=resource_types or [],
    )


def reap_once(client: WebClient, name: str, boot_epoch: str, tasks: Tasks) -> int:
    """Reports what this worker holds; destroys what web says is garbage. Returns how many were destroyed."""
    objects = []
    for handle in tasks.runtime.list():
        m = CONTAINER_RE.match(handle)
        props = {"role": "container", "build": m.group(1), "attempt": m.group(2)} if m else {}
        objects.append(ReportedObject(handle=handle, kind="container", properties=props))
    for vol in tasks.repo.list():
        objects.append(ReportedObject(handle=vol.handle, kind="volume", properties=vol.properties))
    report = ReaperReport(boot_epoch=boot_epoch, objects=objects)
    answer = ReaperAnswer.model_validate(client.call(routes.WORKER_REPORT, json=report.model_dump(mode="json"), name=name))
    busy = tasks.busy_handles()
    destroyed = 0
    for obj in answer.destroy:
        if obj.handle in busy:
            continue  # a runner still uses it (web's view lags by one report)
        try:
            if obj.kind == "container":
                tasks.runtime.destroy(obj.handle)
            else:
                tasks.repo.destroy(obj.handle, cascade=True)
            destroyed += 1
        except (RuntimeError_, VolumeError) as e:
            LOG.warning("reaper could not destroy", kind=obj.kind, handle=obj.handle, error=str(e))
    if destroyed:
        LOG.info("reaper destroyed garbage", count=destroyed)
    return destroyed


def container_network(settings: Settings) -> NetworkConfig | None:
    """The oci runtime's bridge network, as the settings describe it (None: not a bridge-networked worker)."""
    if settings.worker_runtime != "oci" or settings.container_network != "bridge":
        return None
    return NetworkConfig(
        pool=settings.network_pool, dns_servers=settings.dns_servers, restricted=settings.restricted_networks
    )


def run(settings: Settings, work: Work | None = None) -> int:
    work_dir = settings.resolved_work_dir
    boot_epoch, fresh = epoch.load_or_create(work_dir)
    LOG.info("worker starting", worker=settings.worker_name, boot_epoch=boot_epoch, new_epoch=fresh,
             work_dir=str(work_dir), ephemeral=settings.ephemeral, runtime=settings.worker_runtime)
    client = web_client(settings)
    types = load_resource_types(settings.resolved_resource_types_dir)
    try:
        volumes = BackgroundServer(settings).start()
    except (VolumeError, DriverUnavailable) as e:
        raise ConfigError(str(e)) from e
    network = container_network(settings)
    try:
        runtime = get_runtime(settings.worker_runtime, work_dir / "containers", network=network)
    except RuntimeError_ as e:
        volumes.stop()
        raise ConfigError(str(e)) from e
    if not runtime.isolates:
        LOG.warning("THE PROCESS RUNTIME DOES NOT ISOLATE TASKS: they run as this worker's user, on this host")
    tasks = Tasks(client, volumes.repository, runtime, network=settings.container_network,
                  allow_privileged=settings.allow_privileged_tasks,
                  resource_types={t.type: Path(t.image) for t in types})
    work = work or tasks
    beacon = Beacon(client, registration(settings, boot_epoch, volumes.url, volumes.repository.driver.name,
                                         runtime.name, types), heartbeat_interval=settings.heartbeat_interval,
                    drain_timeout=settings.drain_timeout, work=work, state_file=settings.worker_state_file)

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

    def work_loop() -> None:  # long-polls web for builds placed here (and aborts); never calls back in
        poll = web_client(settings, timeout=30.0)
        while not stopping.is_set():
            try:
                found = poll.call(routes.WORKER_WORK, name=settings.worker_name,
                                  params={"boot_epoch": boot_epoch, "wait": 10, "known": tasks.known()})
                accepting = beacon.draining is None and beacon.state == WorkerState.running
                tasks.sync([Assignment.model_validate(a) for a in found], accepting)
            except WebError as e:
                LOG.warning("polling for work failed", error=e.message)
                stopping.wait(1.0)

    def reaper() -> None:
        while not stopping.wait(settings.reaper_interval):
            try:
                reap_once(client, settings.worker_name, boot_epoch, tasks)
            except WebError as e:
                LOG.warning("reaper report failed", error=e.message)

    stopping = threading.Event()
    threading.Thread(target=heartbeats, name="heartbeat", daemon=True).start()
    threading.Thread(target=work_loop, name="work", daemon=True).start()
    threading.Thread(target=reaper, name="reaper", daemon=True).start()
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
        stopping.set()
        beacon.stop_heartbeats()
        beacon.close()
        runtime.close()
        volumes.stop()
        client.close()
