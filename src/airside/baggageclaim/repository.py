"""What the API calls: volumes with properties, TTL and parents on top of `Filesystem` and a driver.

Concurrency: one lock guards the table of volumes (creating, destroying, properties); slow work
(copies, streams, removal) runs outside it. A volume being created already counts as its parent's
child, so the parent cannot be destroyed under it; a volume being streamed into cannot be destroyed
(409) until the stream ends. Destroying a missing volume is success.
"""

from __future__ import annotations

import builtins
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

from airside.baggageclaim import streaming, streamout, tarpipe
from airside.baggageclaim.driver import VolumeDriver
from airside.baggageclaim.errors import InvalidRequest, VolumeConflict, VolumeError, VolumeNotFound
from airside.baggageclaim.filesystem import Filesystem
from airside.baggageclaim.schemas import Encoding, Volume, VolumeSpec
from airside.core import log

LOG = log.get("airside.baggageclaim.repository")


class Repository:
    def __init__(self, fs: Filesystem, driver: VolumeDriver, *, stream_max_bytes: int = 64 << 30,
                 clock: Callable[[], float] = time.time) -> None:
        self.fs, self.driver, self.clock = fs, driver, clock
        self.stream_max_bytes = stream_max_bytes
        self.lock = threading.RLock()
        self.volumes: dict[str, Volume] = {}
        self.creating: dict[str, str | None] = {}  # handle -> parent, while being made
        self.streaming: set[str] = set()

    # --- start-up -------------------------------------------------------------------------------
    def recover(self) -> None:
        """Sweeps init/ and dead/, loads live volumes and lets the driver re-mount them."""
        self.fs.sweep()
        dirs = []
        for d in self.fs.live_dirs():
            try:
                vol = self.fs.read_meta(d)
            except (OSError, ValueError) as e:
                LOG.warning("live volume without readable metadata, removing it", handle=d.name, error=str(e))
                self.fs.kill("live", d.name)
                continue
            self.volumes[vol.handle] = vol
            dirs.append(d)
        self.driver.recover(dirs)
        LOG.info("volumes recovered", count=len(self.volumes), driver=self.driver.name)

    # --- queries ------------------------------------------------------------------------------------
    def get(self, handle: str) -> Volume:
        with self.lock:
            vol = self.volumes.get(handle)
        if vol is None:
            raise VolumeNotFound(f"volume {handle!r} not found")
        return vol

    def list(self, properties: dict[str, str] | None = None) -> list[Volume]:
        want = (properties or {}).items()
        with self.lock:
            vols = list(self.volumes.values())
        return sorted((v for v in vols if all(v.properties.get(k) == val for k, val in want)),
                      key=lambda v: v.created_at)

    def children(self, handle: str) -> builtins.list[str]:
        with self.lock:
            kids = [v.handle for v in self.volumes.values() if v.parent == handle]
            return kids + [h for h, p in self.creating.items() if p == handle]

    def data(self, handle: str) -> Path:
        self.get(handle)
        return self.driver.path(self.fs.dir("live", handle))

    def size(self, handle: str) -> int:
        self.get(handle)
        return self.driver.size(self.fs.dir("live", handle))

    def readable(self, handle: str) -> Volume:
        vol = self.get(handle)
        if vol.state == "failed":
            raise VolumeConflict(f"volume {handle!r} is marked failed ({vol.failure}); destroy it")
        return vol

    # --- creating -----------------------------------------------------------------------------------
    def _begin(self, spec: VolumeSpec, strategy: str) -> tuple[str, Path, Volume | None]:
        handle = spec.handle or uuid.uuid4().hex
        parent = None
        with self.lock:
            if handle in self.volumes or handle in self.creating:
                raise VolumeConflict(f"volume {handle!r} already exists")
            if strategy == "cow":
                if not spec.strategy.parent:
                    raise InvalidRequest("strategy.parent: a cow volume needs a parent handle")
                parent = self.readable(spec.strategy.parent)
            elif spec.strategy.parent:
                raise InvalidRequest(f"strategy.parent: only a cow volume has a parent (strategy is {strategy})")
            d = self.fs.new(handle)
            self.creating[handle] = parent.handle if parent else None
        return handle, d, parent

    def _finish(self, handle: str, spec: VolumeSpec, strategy: str, parent: Volume | None) -> Volume:
        now = self.clock()
        vol = Volume(
            handle=handle, path=str(self.driver.path(self.fs.dir("live", handle))),
            parent=parent.handle if parent else None, strategy=strategy,
            privileged=spec.privileged if parent is None else parent.privileged or spec.privileged,
            properties=dict(spec.properties), ttl=spec.ttl, expires_at=now + spec.ttl if spec.ttl else None,
            created_at=now,
        )
        self.fs.write_meta(self.fs.dir("init", handle), vol)
        with self.lock:
            self.fs.activate(handle)
            self.volumes[handle] = vol
            self.creating.pop(handle, None)
        LOG.info("volume created", handle=handle, strategy=strategy, parent=vol.parent, driver=self.driver.name)
        return vol

    def _abort(self, handle: str) -> None:
        try:
            self.fs.kill("init", handle)
        finally:
            with self.lock:
                self.creating.pop(handle, None)

    def create(self, spec: VolumeSpec) -> Volume:
        strategy = spec.strategy.type
        handle, d, parent = self._begin(spec, strategy)
        try:
            if parent is None:
                self.driver.create_volume(d)
            else:
                self.driver.create_cow(d, self.fs.dir("live", parent.handle))
            return self._finish(handle, spec, strategy, parent)
        except BaseException:
            self._abort(handle)
            raise

    def import_(self, spec: VolumeSpec, chunks: Iterable[streaming.Chunk], encoding: str = "raw") -> Volume:
        """A new volume holding a tar stream; it only appears (live) if the whole stream was good."""
        if spec.strategy.type != "empty" or spec.strategy.parent:
            raise InvalidRequest("strategy: an imported volume has no parent")
        handle, d, _ = self._begin(spec, "import")
        try:
            self.driver.create_volume(d)
            streaming.extract(chunks, self.driver.path(d), "", privileged=spec.privileged, encoding=encoding,
                              limit=self.stream_max_bytes)
            return self._finish(handle, spec, "import", None)
        except BaseException:
            self._abort(handle)
            raise

    # --- changing -----------------------------------------------------------------------------------
    def _update(self, handle: str, **changes: object) -> Volume:
        with self.lock:
            vol = self.get(handle).model_copy(update=changes)
            self.fs.write_meta(self.fs.dir("live", handle), vol)
            self.volumes[handle] = vol
        return vol

    def set_property(self, handle: str, name: str, value: str) -> Volume:
        with self.lock:
            props = {**self.get(handle).properties, name: value}
            return self._update(handle, properties=props)

    def set_ttl(self, handle: str, ttl: float) -> Volume:
        return self._update(handle, ttl=ttl, expires_at=self.clock() + ttl if ttl else None)

    def destroy(self, handle: str, cascade: bool = False) -> builtins.list[str]:
        """Destroys a volume (and, with cascade, its descendants, deepest first). Returns what was destroyed."""
        with self.lock:
            if handle not in self.volumes:
                if handle in self.creating:
                    raise VolumeConflict(f"volume {handle!r} is being created")
                return []
            order: builtins.list[str] = []
            todo = [handle]
            while todo:
                h = todo.pop()
                kids = self.children(h)
                if kids and not cascade:
                    raise VolumeConflict(
                        f"volume {h!r} has children ({', '.join(sorted(kids))}): destroy them first "
                        "or pass cascade=true")
                busy = [k for k in kids if k in self.creating]
                if busy:
                    raise VolumeConflict(f"volume {h!r} has children being created ({', '.join(busy)})")
                order.append(h)
                todo.extend(kids)
            streaming_now = [h for h in order if h in self.streaming]
            if streaming_now:
                raise VolumeConflict(f"volume {streaming_now[0]!r} is being streamed into; try again when it ends")
            buried = []
            for h in reversed(order):
                del self.volumes[h]
                buried.append((h, self.fs.bury("live", h)))
        for h, dead in buried:  # children first: an overlay child unmounts before its parent's layer goes
            if dead is not None:
                self.fs.reap(dead)
            LOG.info("volume destroyed", handle=h, cascade_of=handle if h != handle else None)
        return [h for h, _ in buried]

    # --- streaming ----------------------------------------------------------------------------------
    def stream_in(self, handle: str, sub: str, chunks: Iterable[streaming.Chunk] | tarpipe.Source,
                  encoding: str = "raw") -> int:
        """Extracts a tar stream into a volume's sub-path (see `streaming`). On a refused or broken stream the
        volume is as it was when the destination was empty or missing before, else it is marked failed."""
        with self.lock:
            vol = self.readable(handle)
            if handle in self.streaming:
                raise VolumeConflict(f"volume {handle!r} is already being streamed into")
            self.streaming.add(handle)
        try:
            entries, _ = streaming.extract(chunks, self.data(handle), sub, privileged=vol.privileged,
                                           encoding=encoding, limit=self.stream_max_bytes)
            LOG.info("streamed in", handle=handle, path=sub or ".", entries=entries)
            return entries
        except Exception as e:
            if not getattr(e, "restored", True):
                reason = e.message if isinstance(e, VolumeError) else str(e)
                self._update(handle, state="failed", failure=f"stream-in to {sub or '.'!r} failed: {reason}")
                LOG.warning("stream-in failed, volume marked failed", handle=handle, path=sub or ".", error=reason)
            else:
                LOG.info("stream-in refused, volume unchanged", handle=handle, path=sub or ".", error=str(e))
            raise
        finally:
            with self.lock:
                self.streaming.discard(handle)

    def stream_out(self, handle: str, sub: str, encoding: Encoding = "raw") -> streamout.TarOut:
        """Starts the tar stream of a volume's sub-path (`streamout.TarOut`: its caller sends it and reaps it).
        VolumeNotFound, VolumeConflict (failed volume) or InvalidRequest (the path) before tar runs."""
        self.readable(handle)
        return streamout.TarOut(self.data(handle), sub, encoding, handle=handle)

    # --- expiry ---------------------------------------------------------------------------------------
    def expire(self) -> builtins.list[str]:
        """Destroys volumes whose TTL passed. A parent waits for its children (they may expire later)."""
        gone: builtins.list[str] = []
        while True:
            now = self.clock()
            with self.lock:
                due = [v.handle for v in self.volumes.values()
                       if v.expires_at is not None and v.expires_at <= now and not self.children(v.handle)
                       and v.handle not in self.streaming]
            if not due:
                return gone
            for h in due:
                try:
                    gone += self.destroy(h)
                    LOG.info("volume expired", handle=h)
                except VolumeConflict as e:
                    LOG.info("expired volume kept for now", handle=h, why=e.message)
                    return gone
