"""Client side of the shim, shared by the backends that run containers on this machine (oci, process).

`SupervisedRuntime` keeps all of a container's state in `<state_dir>/<handle>/` (layout in
`airside.runtime.shim`), so a new instance over the same state dir — a restarted worker — finds every
container again: `list()`, `status()`, `logs()` (replay, then follow) and `wait()` work the same.
Backends provide `prepare()` (write spec.json + command.json), `_deliver(handle, sig)` and
`_teardown(handle)`.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

from airside.core import log as logging

from . import shim
from .base import ContainerSpec, ExitStatus, LogChunk, Runtime, RuntimeError_

HANDLE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$")

log = logging.get("airside.runtime")


def check_handle(handle: str) -> str:
    if not HANDLE_RE.match(handle or ""):
        raise RuntimeError_(
            f"invalid container handle {handle!r}: use 1-128 letters, digits, '_', '.', '+', '-', starting with a letter or digit"
        )
    return handle


def spec_to_json(spec: ContainerSpec) -> dict:
    d = asdict(spec)
    d["rootfs"] = str(spec.rootfs) if spec.rootfs is not None else None
    d["mounts"] = [{**m, "source": str(m["source"])} for m in d["mounts"]]
    return d


def _read_pidfile(path: Path) -> tuple[int, int | None] | None:
    try:
        parts = path.read_text().split()
    except (OSError, ValueError):
        return None
    if not parts:
        return None
    return int(parts[0]), (int(parts[1]) if len(parts) > 1 and parts[1] != "0" else None)


def pid_alive(path: Path) -> int | None:
    """The pid recorded in `path` if that very process (same start time) is still alive."""
    rec = _read_pidfile(path)
    if rec is None:
        return None
    pid, start = rec
    now = shim.proc_starttime(pid)
    if now is None or (start is not None and now != start):
        return None
    return pid


class SupervisedRuntime(Runtime):
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._children: dict[str, tuple[subprocess.Popen, int]] = {}  # handle -> (shim, notify read fd)

    # ---- layout -------------------------------------------------------------------------------
    def cdir(self, handle: str) -> Path:
        return self.state_dir / check_handle(handle)

    def _new_cdir(self, spec: ContainerSpec) -> Path:
        cdir = self.cdir(spec.handle)
        if (cdir / "spec.json").exists():
            raise RuntimeError_(
                f"container {spec.handle!r} already exists in {self.state_dir}; destroy it first"
            )
        cdir.mkdir(parents=True, exist_ok=True)
        return cdir

    def _commit_prepare(self, cdir: Path, spec: ContainerSpec, command: dict) -> None:
        if spec.stdin is not None:
            shim.write_atomic(str(cdir / "stdin"), spec.stdin.encode())
            command = {**command, "stdin": str(cdir / "stdin")}
        shim.write_atomic(str(cdir / "command.json"), json.dumps(command, indent=1).encode())
        shim.write_atomic(str(cdir / "spec.json"), json.dumps(spec_to_json(spec), indent=1).encode())

    # ---- phases -------------------------------------------------------------------------------
    def start(self, handle: str) -> None:
        cdir = self.cdir(handle)
        if not (cdir / "spec.json").exists():
            raise RuntimeError_(f"container {handle!r} is not prepared")
        if (cdir / "shim.pid").exists() or (cdir / "exit.json").exists():
            raise RuntimeError_(f"container {handle!r} was already started")
        r, w = os.pipe()
        os.set_inheritable(w, True)
        shim_log = open(cdir / "shim.log", "ab")
        try:
            # the shim is stdlib-only: run its file with -S (no site) so it starts fast and does not
            # depend on how airside is installed; -u for an unbuffered shim.log
            proc = subprocess.Popen(
                [sys.executable, "-S", "-u", shim.__file__, str(cdir), "--notify-fd", str(w)],
                stdin=subprocess.DEVNULL,
                stdout=shim_log,
                stderr=shim_log,
                pass_fds=(w,),
                start_new_session=True,
                cwd="/",
            )
        except OSError as e:
            os.close(r)
            raise RuntimeError_(f"could not start the supervisor for {handle!r}: {e}") from e
        finally:
            os.close(w)
            shim_log.close()
        shim.write_pidfile(str(cdir / "shim.pid"), proc.pid)
        with self._lock:
            self._children[handle] = (proc, r)
        log.info("container started", handle=handle, runtime=self.name, shim_pid=proc.pid)

    def _read_exit(self, cdir: Path) -> dict | None:
        try:
            return json.loads((cdir / "exit.json").read_text())
        except FileNotFoundError:
            return None
        except ValueError:
            return None

    def _shim_alive(self, handle: str, cdir: Path) -> bool:
        with self._lock:
            child = self._children.get(handle)
        if child is not None:
            return child[0].poll() is None
        return pid_alive(cdir / "shim.pid") is not None

    def status(self, handle: str) -> str:
        cdir = self.cdir(handle)
        if not (cdir / "spec.json").exists():
            return "missing"
        if (cdir / "exit.json").exists():
            return "exited"
        if not (cdir / "shim.pid").exists():
            return "prepared"
        if self._shim_alive(handle, cdir):
            return "running"
        return "exited"  # the supervisor died without recording a status; wait() says so

    def list(self) -> list[str]:
        try:
            entries = sorted(os.listdir(self.state_dir))
        except FileNotFoundError:
            return []
        return [e for e in entries if not e.startswith(".") and (self.state_dir / e / "spec.json").exists()]

    def wait(self, handle: str, timeout: float | None = None) -> ExitStatus | None:
        cdir = self.cdir(handle)
        if not (cdir / "spec.json").exists():
            raise RuntimeError_(f"container {handle!r} does not exist")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            st = self._read_exit(cdir)
            if st is not None:
                self._reap(handle)
                if st.get("error"):
                    raise RuntimeError_(f"container {handle!r} did not start: {st['error']}")
                return ExitStatus(code=int(st["code"]), reason=st.get("reason", ""))
            if (cdir / "shim.pid").exists() and not self._shim_alive(handle, cdir):
                if (st := self._read_exit(cdir)) is not None:
                    continue
                raise RuntimeError_(
                    f"the supervisor of container {handle!r} died without recording an exit status "
                    f"(see {cdir / 'shim.log'})"
                )
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            step = 0.05 if remaining is None else min(0.05, remaining)
            with self._lock:
                child = self._children.get(handle)
            if child is not None:
                # the shim closes its end of the notify pipe right after writing exit.json
                select.select([child[1]], [], [], 1.0 if remaining is None else min(1.0, remaining))
                if self._read_exit(cdir) is None and child[0].poll() is None:
                    time.sleep(0.001)  # EOF without exit.json cannot last: the shim is exiting
            else:
                time.sleep(step)

    def _reap(self, handle: str) -> None:
        with self._lock:
            child = self._children.get(handle)
        if child is not None and child[0].poll() is not None:
            with self._lock:
                self._children.pop(handle, None)
            os.close(child[1])

    def logs(self, handle: str, follow: bool = True) -> Iterator[LogChunk]:
        cdir = self.cdir(handle)
        if not (cdir / "spec.json").exists():
            raise RuntimeError_(f"container {handle!r} does not exist")
        path = cdir / "output.log"

        def done() -> bool:
            st = self.status(handle)
            return st in ("exited", "missing")

        f = None
        buf = b""
        delay = 0.005
        try:
            while True:
                if f is None:
                    try:
                        f = open(path, "rb", buffering=0)
                    except FileNotFoundError:
                        if not follow or done():
                            return
                        time.sleep(delay)
                        delay = min(delay * 2, 0.1)
                        continue
                data = f.read(shim.CHUNK * 4)
                if data:
                    buf += data
                    delay = 0.005
                    while len(buf) >= shim.HEADER.size:
                        stream, n = shim.HEADER.unpack_from(buf)
                        if len(buf) < shim.HEADER.size + n:
                            break
                        yield LogChunk(
                            shim.STREAMS.get(stream, "stdout"), buf[shim.HEADER.size : shim.HEADER.size + n]
                        )
                        buf = buf[shim.HEADER.size + n :]
                    continue
                if not follow:
                    return
                if done():
                    # exit.json is written after output.log is complete: one last read finds the rest
                    if data := f.read():
                        buf += data
                        continue
                    return
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
        finally:
            if f is not None:
                f.close()

    def signal(self, handle: str, sig: int) -> None:
        st = self.status(handle)
        if st == "missing":
            raise RuntimeError_(f"container {handle!r} does not exist")
        if st != "running":
            return  # nothing to signal: not started, or already exited
        self._deliver(handle, sig)

    def destroy(self, handle: str) -> None:
        cdir = self.cdir(handle)
        if not cdir.exists():
            return
        # kill the task; repeat while the supervisor lives, in case the task was still being created
        deadline = time.monotonic() + 15
        while True:
            self._teardown(handle)
            if not (cdir / "shim.pid").exists():
                break
            settle = min(deadline, time.monotonic() + 1)
            while self._shim_alive(handle, cdir) and time.monotonic() < settle:
                time.sleep(0.005)
            if not self._shim_alive(handle, cdir) or time.monotonic() > deadline:
                break
        if (pid := pid_alive(cdir / "shim.pid")) is not None:
            log.warning("supervisor did not exit; killing it", handle=handle, pid=pid)
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        with self._lock:
            child = self._children.pop(handle, None)
        if child is not None:
            try:
                child[0].wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            os.close(child[1])
        shutil.rmtree(cdir, ignore_errors=True)
        log.info("container destroyed", handle=handle, runtime=self.name)

    # ---- backend hooks ------------------------------------------------------------------------
    def _deliver(self, handle: str, sig: int) -> None:
        raise NotImplementedError

    def _teardown(self, handle: str) -> None:
        """Kill whatever runs for `handle` (if anything) and release backend resources; idempotent."""
        raise NotImplementedError
