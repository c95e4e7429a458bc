"""Running builds as Kubernetes Jobs: web drives `airside.runtime.kubernetes` itself, no worker involved.

For a build placed on Kubernetes, one thread runs a `KubeAttempt` — web's `AttemptBackend` — through
`airside.runtime.attempt.run_attempt`, the same lifecycle (names, phase order, outcome rules) a worker's
runner goes through. For build B attempt A (handle `bB-aA`):
  1. copies each uploaded input from web's artifact store into the cluster's artifact store
     (`airside baggageclaim`) as volume `bB-aA-in-<name>`, and finds each cache's newest saved volume
     there (see Caches)                                                        → image_ready, inputs_ready
  2. creates the Job (init `fetch-inputs`, the task in the user's image, `upload-outputs`) → started
  3. stores the task container's log (pod log API) as build events; an abort deletes the pod
  4. exit status → (when the outcome keeps them: outputs copied back from `bB-aA-output-<name>` into
     web's artifact store, and the caches the pod uploaded marked saved) → finish; evictions / node loss
     requeue the build like a lost worker, other Kubernetes failures end it errored with the reason (image
     pull, unschedulable, deadline, …)
  5. the Job and the build's artifact-store volumes are removed whichever way it ended

The Job's image is pulled by the kubelet when the pod starts, so `image_ready` is recorded together with
`inputs_ready` (both before the Job exists); the pull shows up in the time to `started` and in the run.

A restarted web re-adopts the Kubernetes builds that were running: it follows the same Job's log from the
start (web stores each byte once) and waits for it; a build whose Job is gone is requeued.

Caches
------
A build's caches live in the artifact store, keyed like worker caches (`AttemptNames.cache_volume(cache_key,
path)`, `cache-<hex>`), but never written in place: each attempt's `upload-outputs` saves a cache anew as
`cache-<hex>-bB-aA` (`cache_saved_volume`), which web marks saved (properties `cache`, `path`, `saved_at`,
`last_used`) only once the task succeeded and the upload ended; the newest saved volume of a key is the
cache. An attempt fetches it through a copy-on-write child of its own (`bB-aA-cache-<i>`), so removing a
superseded volume can never pull it from under a pod that is still reading it (the store refuses to destroy
a parent). Concurrent builds with one cache key therefore never corrupt each other: each reads a whole saved
volume and writes its own; the last to succeed wins. Each cache's outcome is a line on the build's `airside`
log stream ("cache PATH: hit (N bytes)", "miss", "saved"), which `airside execute` prints. A build without a
cache key keeps no caches (every `airside execute` build has one: the task file's). `KubeDispatcher.sweep_caches` (on the dispatcher's
tick, every CACHE_SWEEP_SECONDS) removes a cache unused (`last_used`) for `cache_ttl`, superseded saved
volumes, and leftovers of attempts a web restart cut short (`caches_to_remove`).
"""

from __future__ import annotations

import base64
import re
import signal
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog
from sqlalchemy.orm import Session

from airside.baggageclaim.client import VolumeClient, VolumeClientError
from airside.baggageclaim.schemas import Volume
from airside.config import secret
from airside.core import log
from airside.core.schemas import BuildStatus, FinishReport, LogBatch, LogChunkIn, Phase
from airside.runtime import ExitStatus, RuntimeError_
from airside.runtime.attempt import AttemptNames, Lost, run_attempt
from airside.task import parse_task_config
from airside.task.config import TaskConfig
from airside.web import builds
from airside.web.errors import Conflict

if TYPE_CHECKING:
    from airside.runtime.kubernetes import KubernetesRuntime
    from airside.web.host import WebHost as Web

LOG = log.get("airside.web.kubernetes")

CACHE_SWEEP_SECONDS = 60.0  # how often the dispatcher sweeps the artifact store's caches (sweep_caches)
_SAVED_CACHE = re.compile(r"^cache-[0-9a-f]{24}-b\d+-a\d+$")  # AttemptNames.cache_saved_volume
_FETCHED_CACHE = re.compile(r"^b\d+-a\d+-cache-\d+$")  # AttemptNames.cache_fetch_volume
FETCH_ROLE = "cache-fetch"  # the role property of an attempt's copy of a saved cache


def _describe(e: BaseException) -> str:
    if isinstance(e, VolumeClientError | OSError):
        return f"artifact store: {getattr(e, 'message', None) or e}"
    return str(e)


class KubeDispatcher:
    def __init__(self, web: Web) -> None:
        from airside.runtime.kubernetes import KubernetesRuntime  # the kubernetes client loads only when used

        self.web = web
        settings = web.settings
        self.token = secret(settings.baggageclaim_token) or ""
        self.rt: KubernetesRuntime = KubernetesRuntime.from_settings(settings, artifact_token=self.token or None)
        self.store_url = settings.kubernetes_artifact_web_url or settings.kubernetes_artifact_url
        self.threads: dict[int, threading.Thread] = {}
        self.lock = threading.Lock()
        self.cache_swept: float | None = None  # when sweep_caches last started (web's clock)

    def store(self) -> VolumeClient:
        return VolumeClient(self.store_url, self.token)

    def tick(self) -> None:
        """Claims pending Kubernetes builds and adopts running ones nobody follows (after a web restart)."""
        now = self.web.clock()
        with self.web.tx() as s:
            claimed = [(b.id, b.attempt) for b in builds.place_on_kubernetes(s, now)]
        with self.web.sessions() as s:
            active = [(b.id, b.attempt, b.status) for b in builds.active_on_kubernetes(s)]
        for build_id, attempt, status in active:
            with self.lock:
                if build_id in self.threads and self.threads[build_id].is_alive():
                    continue
                fresh = (build_id, attempt) in claimed
                t = threading.Thread(target=self.run, args=(build_id, attempt, not fresh, status),
                                     name=f"k8s-build-{build_id}", daemon=True)
                self.threads[build_id] = t
            t.start()
        if self.store_url and (self.cache_swept is None or now - self.cache_swept >= CACHE_SWEEP_SECONDS):
            self.cache_swept = now
            threading.Thread(target=self._sweep_quietly, name="k8s-cache-sweep", daemon=True).start()

    # --- caches in the artifact store ----------------------------------------------------------------
    def sweep_caches(self) -> list[str]:
        """Removes from the artifact store what `caches_to_remove` says (a volume another web replica removed
        first, or one still in use — a parent of a running attempt's copy, a volume being written — is left
        for a later sweep). Returns the handles removed."""
        with self.store() as store:
            doomed = caches_to_remove(store.list(), self.web.clock(), self.web.settings.cache_ttl)
            removed = _remove(store, doomed, LOG)
        if removed:
            LOG.info("caches removed from the artifact store", volumes=removed)
        return removed

    def _sweep_quietly(self) -> None:
        try:
            self.sweep_caches()
        except VolumeClientError as e:  # the store is down or restarting: the next sweep tries again
            LOG.warning("cache sweep of the artifact store failed", error=e.message)

    # --- one build -------------------------------------------------------------------------------------
    def run(self, build_id: int, attempt: int, adopt: bool, status: str) -> None:
        try:
            with self.web.sessions() as s:
                b = builds.get(s, build_id)
                cfg, inputs, tags, privileged = parse_task_config(b.config), list(b.inputs), list(b.tags), b.privileged
                cache_key, stdin, resource_type, image_input = b.cache_key, b.stdin, b.resource_type, b.image_input
            att = KubeAttempt(self, AttemptNames(build_id, attempt), cfg, inputs, tags, privileged, cache_key)
            att.stdin, att.resource_type, att.image_input = stdin, resource_type, image_input
            if adopt and (status != BuildStatus.running or self.rt.status(att.handle) == "missing"):
                with self.web.tx() as s:
                    builds.interrupt(s, builds.get(s, build_id, lock=True),
                                     f"web restarted while Job {att.handle} was being set up", self.web.clock())
                att.cleanup()
                return
            if adopt:
                att.log.info("adopting a running job")
            run_attempt(att, adopt=adopt, describe=_describe)
        except Conflict as e:
            LOG.info("build no longer ours", build=build_id, why=str(e))
        finally:
            with self.lock:
                self.threads.pop(build_id, None)
            self.web.wake_scheduler()

    def _await_store(self, lg: structlog.stdlib.BoundLogger) -> None:
        """Waits up to `kubernetes_schedule_timeout` for the artifact store to answer (its pod starting or
        restarting: connection refused, 502/503), logging each retry; then raises VolumeClientError naming
        how long it waited. Other answers (a wrong token: 401) raise at once."""
        wait = self.web.settings.kubernetes_schedule_timeout
        deadline, delay = time.monotonic() + wait, 1.0
        with self.store() as store:
            while True:
                try:
                    store.info()
                    return
                except VolumeClientError as e:
                    if e.status not in (0, 502, 503, 504):
                        raise
                    if time.monotonic() + delay > deadline:
                        raise VolumeClientError(e.status, f"{e.message} (waited {wait:.0f}s: "
                                                          "kubernetes_schedule_timeout)") from None
                    lg.warning("artifact store not answering; waiting", error=e.message, retry_in=delay)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)


# --------------------------------------------------------------------------- caches (see the module docstring)


def _saved(v: Volume) -> bool:
    return bool(_SAVED_CACHE.match(v.handle)) and "saved_at" in v.properties and "cache" in v.properties


def _order(v: Volume) -> tuple[float, float, str]:
    return float(v.properties["saved_at"]), v.created_at, v.handle


def newest_saved(volumes: Iterable[Volume], key: str) -> Volume | None:
    """The cache `key`'s newest saved volume (by `saved_at`: the last attempt to succeed), if any."""
    return max((v for v in volumes if _saved(v) and v.properties["cache"] == key and v.state == "ready"),
               key=_order, default=None)


def caches_to_remove(volumes: Sequence[Volume], now: float, ttl: float) -> list[str]:
    """What a sweep removes of an artifact store's `volumes` at `now` (pure): a saved cache unused
    (`last_used`) for `ttl` seconds; a saved volume a newer one of its cache superseded; a cache volume an
    attempt uploaded but web never marked saved (web stopped between the two) and an attempt's copy of a
    saved cache (its fetch is long over), each once older than `ttl`. Copies come first, so the parents they
    held can go in the same sweep. Other volumes (inputs, outputs) are not looked at."""
    newest: dict[str, Volume] = {}
    for v in volumes:
        key = v.properties.get("cache", "")
        if _saved(v) and (key not in newest or _order(v) > _order(newest[key])):
            newest[key] = v
    copies, saved = [], []
    for v in volumes:
        if _saved(v):
            used = float(v.properties.get("last_used", v.properties["saved_at"]))
            if newest[v.properties["cache"]] is not v or now - used >= ttl:
                saved.append(v.handle)
        elif _SAVED_CACHE.match(v.handle) and now - v.created_at >= ttl:
            saved.append(v.handle)
        elif _FETCHED_CACHE.match(v.handle) and v.properties.get("role") == FETCH_ROLE and now - v.created_at >= ttl:
            copies.append(v.handle)
    return copies + saved


def _remove(store: VolumeClient, handles: Iterable[str], lg: structlog.stdlib.BoundLogger) -> list[str]:
    """Destroys each volume, leaving the ones already gone (404) or still in use (409: children, a stream)."""
    removed = []
    for h in handles:
        try:
            store.destroy(h)
            removed.append(h)
        except VolumeClientError as e:
            if e.status not in (404, 409):
                raise
            lg.debug("cache volume not removed", volume=h, why=e.message)
    return removed


@dataclass
class _Cache:
    """One cache of an attempt: its container path, the cache's key volume name, the volume this attempt
    saves it to, its own copy of the saved one, and which saved volume that copy is of ("" : a miss)."""

    path: str
    key: str
    saved: str
    fetched: str
    source: str = ""



class KubeAttempt:
    """One build attempt as a Kubernetes Job (an `airside.runtime.attempt.AttemptBackend`)."""

    origin = "web"
    infra_errors: tuple[type[BaseException], ...] = (RuntimeError_, VolumeClientError, OSError)

    def __init__(self, d: KubeDispatcher, names: AttemptNames, cfg: TaskConfig, inputs: list[str],
                 tags: list[str] | None = None, privileged: bool = False, cache_key: str = "") -> None:
        self.d, self.names, self.cfg, self.inputs = d, names, cfg, inputs
        self.tags, self.privileged, self.cache_key = list(tags or []), privileged, cache_key
        self.stdin: str | None = None  # a resource script's request (read on its stdin)
        self.resource_type = ""  # a type workers offer: it has no image a pod could run
        self.image_input = ""  # a pipeline step's `image:` artifact: a rootfs, which a pod cannot run
        self.handle = names.handle
        self.web, self.rt = d.web, d.rt
        self.log: structlog.stdlib.BoundLogger = LOG.bind(build=names.build_id, attempt=names.attempt,
                                                          job=self.handle)
        # the caches' names follow from the build alone, so a web that adopted the Job saves them too
        paths = [str(p) for p in cfg.cache_paths()] if cache_key else []
        self.caches = [_Cache(p, names.cache_volume(cache_key, p), names.cache_saved_volume(cache_key, p),
                              names.cache_fetch_volume(i)) for i, p in enumerate(paths)]
        self.kept: set[str] = set()  # saved volumes marked saved by this attempt (not removed at cleanup)

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        """A transaction on web's database; a Conflict (the build is no longer this attempt's) is `Lost`."""
        try:
            with self.web.tx() as s:
                yield s
        except Conflict as e:
            raise Lost(str(e)) from e

    # --- the lifecycle's steps ---------------------------------------------------------------------------
    def prepare_image(self) -> None:
        """Nothing: the kubelet pulls the image when the pod starts."""

    def prepare_inputs(self) -> None:
        self.d._await_store(self.log)
        build_id = self.names.build_id
        with self.d.store() as store:
            for name in self.inputs:
                found = self.web.artifacts.find(build_id, "inputs", name)
                if found is None:
                    raise OSError(f"input {name!r} of build {build_id} is not in web's artifact store")
                path, encoding = found
                vol = self.names.input_volume(name)
                store.create(vol, properties=self.names.properties("input"))
                store.stream_in(vol, self.web.artifacts.read(path), encoding="zstd" if encoding == "zstd" else "raw")
            if self.cfg.caches and not self.cache_key:
                for p in self.cfg.cache_paths():
                    self.note(f"cache {p}: not kept (the build has no cache key)")
            for c in self.caches:
                self.note(self._fetch_cache(store, c))

    def _fetch_cache(self, store: VolumeClient, c: _Cache) -> str:
        """Makes this attempt's copy of the cache's newest saved volume, if there is one; says which it was.
        A saved volume removed between finding and copying it (superseded meanwhile) means looking again."""
        try:
            for _ in range(3):
                newest = newest_saved(store.list(cache=c.key), c.key)
                if newest is None:
                    return f"cache {c.path}: miss"
                try:
                    store.create(c.fetched, strategy="cow", parent=newest.handle,
                                 properties={**self.names.properties(FETCH_ROLE), "cache": c.key})
                except VolumeClientError as e:
                    if e.status != 404:
                        raise
                    continue
                store.set_property(newest.handle, "last_used", str(self.web.clock()))
                c.source = newest.handle
                return f"cache {c.path}: hit ({store.size(c.fetched)} bytes)"
            return f"cache {c.path}: miss (its saved volumes kept being replaced)"
        except VolumeClientError as e:  # a cache is worth a try, not a build: run without it
            self.log.warning("cache not fetched", cache=c.key, error=e.message)
            return f"cache {c.path}: miss (artifact store: {e.message})"

    def _save_caches(self, store: VolumeClient) -> None:
        """Marks each cache the pod uploaded saved (the task succeeded: `upload-outputs` ran after it). A cache
        that cannot be saved is said so; the build still succeeds."""
        now = str(self.web.clock())
        for c in self.caches:
            try:
                for name, value in (("role", "cache"), ("cache", c.key), ("path", c.path),
                                    ("cache_key", self.cache_key), ("last_used", now), ("saved_at", now)):
                    store.set_property(c.saved, name, value)  # saved_at last: it is what makes the volume a cache
            except VolumeClientError as e:
                self.log.warning("cache not saved", cache=c.key, error=e.message)
                self.note(f"cache {c.path}: not saved (artifact store: {e.message})")
                continue
            self.kept.add(c.saved)
            self.note(f"cache {c.path}: saved")

    def note(self, text: str) -> None:
        """A line of web's own on the build's `airside` log stream (`airside execute` prints it on stderr)."""
        data = (text + "\n").encode()
        with self._tx() as s:
            b = builds.get(s, self.names.build_id, lock=True)
            # where this attempt's airside stream ends (builds.append_logs keys offsets by "attempt:stream"):
            # a web that adopted the Job continues after what the one before it wrote
            offset = (b.log_offsets or {}).get(f"{self.names.attempt}:airside", 0)
            builds.append_logs(s, self.names.build_id, None, LogBatch(attempt=self.names.attempt, chunks=[
                LogChunkIn(stream="airside", offset=offset, data=base64.b64encode(data).decode())]), self.web.clock())

    def start_container(self) -> None:
        from airside.runtime.kubernetes import KubeCache, KubeTaskSpec

        n = self.names
        if self.image_input:
            raise RuntimeError_("image: from an artifact (a get's rootfs) cannot run as a Kubernetes Job, whose "
                                "image the kubelet pulls from a registry: use the task config's image_resource")
        if self.resource_type:
            raise RuntimeError_(f"resource type {self.resource_type!r} is one workers offer (a rootfs on the worker), "
                                "which a Kubernetes Job cannot run: declare it in the pipeline's resource_types with "
                                "its registry image, or run resource steps on workers")
        spec = KubeTaskSpec.from_task_config(
            self.cfg, handle=self.handle, inputs={name: n.input_volume(name) for name in self.inputs},
            outputs={o.name: n.output_volume(o.name) for o in self.cfg.outputs},
            build=str(n.build_id), attempt=n.attempt, step="task", tags=self.tags, privileged=self.privileged,
            caches={c.path: KubeCache(c.path, fetch=c.fetched if c.source else "", upload=c.saved)
                    for c in self.caches}, stdin=self.stdin)
        self.rt.prepare(spec)
        self.rt.start(self.handle)
        self.log.info("job started")

    def phase(self, phase: Phase) -> None:
        with self._tx() as s:
            builds.phase(s, self.names.build_id, None, self.names.attempt, phase, self.web.clock())

    def follow(self) -> None:
        done = threading.Event()

        def abort_watch() -> None:
            while not done.wait(1.0):
                if self.aborted():
                    self.rt.signal(self.handle, signal.SIGKILL)
                    return

        threading.Thread(target=abort_watch, daemon=True, name=f"k8s-abort-{self.names.build_id}").start()
        offsets: dict[str, int] = {}
        try:
            for chunk in self.rt.logs(self.handle, follow=True):
                off = offsets.get(chunk.stream, 0)
                offsets[chunk.stream] = off + len(chunk.data)
                batch = LogBatch(attempt=self.names.attempt, chunks=[
                    LogChunkIn(stream=chunk.stream, offset=off, data=base64.b64encode(chunk.data).decode())])
                with self._tx() as s:
                    builds.append_logs(s, self.names.build_id, None, batch, self.web.clock())
        finally:
            done.set()

    def wait(self) -> ExitStatus | None:
        return self.rt.wait(self.handle)

    def aborted(self) -> bool:
        with self.web.sessions() as s:
            return bool(builds.get(s, self.names.build_id).abort_requested)

    def interrupted(self) -> str | None:
        return None

    def collect_outputs(self) -> list[str]:
        names = []
        with self.d.store() as store:
            for o in self.cfg.outputs:
                self.web.artifacts.write_iter(self.names.build_id, "outputs", o.name, "identity",
                                              store.stream_out(self.names.output_volume(o.name)),
                                              self.web.settings.max_upload_bytes)
                names.append(o.name)
            self._save_caches(store)  # kept on the same rule as outputs: only a task that succeeded saves them
        return names

    def finish(self, report: FinishReport) -> None:
        with self._tx() as s:
            b = builds.finish(s, self.names.build_id, None, report, self.web.clock())
            self.web.observe_finished(b)

    def fail(self, reason: str, requeue: bool) -> None:
        with self._tx() as s:
            b = builds.get(s, self.names.build_id, lock=True)
            if b.attempt != self.names.attempt or b.status not in (BuildStatus.placed, BuildStatus.running):
                return
            if requeue:
                builds.interrupt(s, b, reason, self.web.clock())
            else:
                builds.finish(s, self.names.build_id, None, FinishReport(
                    attempt=self.names.attempt, status=BuildStatus.errored, reason=reason), self.web.clock())

    def cleanup(self) -> None:
        try:
            self.rt.destroy(self.handle)
        except RuntimeError_ as e:
            self.log.warning("job cleanup failed", error=str(e))
        volumes = [*(self.names.input_volume(n) for n in self.inputs),
                   *(self.names.output_volume(o.name) for o in self.cfg.outputs)]
        with self.d.store() as store:
            for vol in volumes:
                try:
                    store.destroy(vol)
                except VolumeClientError as e:
                    self.log.warning("artifact volume cleanup failed", volume=vol, error=e.message)
            # this attempt's copies of saved caches, what it uploaded but did not save (a failed, aborted or
            # errored task uploads nothing; one stopped between upload and save does), then the saved volumes
            # a newer one superseded (those another attempt still copies from stay: the sweep takes them later)
            try:
                _remove(store, [*(c.fetched for c in self.caches), *(c.saved for c in self.caches
                                                                      if c.saved not in self.kept)], self.log)
                for c in self.caches:
                    vols = store.list(cache=c.key)
                    newest = newest_saved(vols, c.key)
                    _remove(store, [v.handle for v in vols if _saved(v) and v is not newest], self.log)
            except VolumeClientError as e:
                self.log.warning("cache volume cleanup failed (the sweep will remove them)", error=e.message)
