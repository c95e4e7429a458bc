"""Fixtures for runtime tests: a busybox rootfs, runtimes over temporary state dirs, helpers."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Collection, Iterator
from pathlib import Path

import pytest

from airside.runtime import ContainerSpec, Runtime, get_runtime
from tests.procs import wait_for
from tests.rootfs import busybox_path, make_busybox_rootfs

IS_ROOT = os.geteuid() == 0
HAVE_RUNC = shutil.which("runc") is not None

needs_runc = pytest.mark.skipif(
    not (IS_ROOT and HAVE_RUNC), reason="needs root and runc (apt-get install runc)"
)
needs_busybox = pytest.mark.skipif(
    busybox_path() is None, reason="needs busybox-static (apt-get install busybox-static)"
)


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if busybox_path() is None:
        pytest.skip("needs busybox-static (apt-get install busybox-static)")
    return make_busybox_rootfs(tmp_path_factory.mktemp("busybox") / "rootfs")


@pytest.fixture
def fresh_rootfs(tmp_path: Path, busybox_rootfs: Path) -> Path:
    """A private copy of the busybox rootfs (a container's COW volume stands in for this)."""
    dest = tmp_path / "rootfs"
    subprocess.run(["cp", "-a", str(busybox_rootfs), str(dest)], check=True)
    return dest


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def destroy_all() -> Iterator[list[Runtime]]:
    """Runtimes registered here get every container destroyed at teardown."""
    runtimes: list[Runtime] = []
    yield runtimes
    for rt in runtimes:
        for handle in rt.list():
            rt.destroy(handle)


def collect(rt: Runtime, handle: str) -> dict[str, bytes]:
    out = {"stdout": b"", "stderr": b""}
    for chunk in rt.logs(handle):
        out[chunk.stream] += chunk.data
    return out


def start_in_doomed_worker(kind: str, state_dir: Path, spec: ContainerSpec) -> None:
    """Prepare and start `spec` from a separate "worker" process, then kill that process with -9."""
    code = textwrap.dedent(
        f"""
        import json, sys, time
        from pathlib import Path
        from airside.runtime import ContainerSpec, Mount, get_runtime
        d = json.loads(sys.argv[1])
        d["mounts"] = [Mount(Path(m["source"]), m["destination"], m["read_only"]) for m in d["mounts"]]
        d["rootfs"] = Path(d["rootfs"]) if d["rootfs"] else None
        d.pop("limits")
        rt = get_runtime({kind!r}, Path({str(state_dir)!r}))
        rt.prepare(ContainerSpec(**d))
        rt.start(d["handle"])
        print("started", flush=True)
        time.sleep(600)
        """
    )
    from airside.runtime.supervise import spec_to_json

    proc = subprocess.Popen(
        [sys.executable, "-c", code, json.dumps(spec_to_json(spec))], stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # (log lines may come first)
            if line.strip() == b"started":
                break
        else:
            raise AssertionError("the doomed worker did not start the container")
    finally:
        proc.kill()
        proc.wait()


def runtime(kind: str, state_dir: Path) -> Runtime:
    return get_runtime(kind, state_dir)



def live_processes(mark: str | None = None, sessions: Collection[int] = ()) -> list[int]:
    """Live (not zombie) processes whose environment has the entry `mark` or that run in one of `sessions`."""
    needle = mark.encode() if mark else None
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
            fields = stat[stat.rfind(")") + 2 :].split()  # state, ppid, pgrp, session, ...
            if fields[0] in ("Z", "X"):
                continue
            if int(fields[3]) in sessions:
                found.append(int(entry))
                continue
            if needle is not None:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if needle in f.read().split(b"\0"):
                        found.append(int(entry))
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile, or not ours to read
    return found


def cgroup_dirs(pid: int) -> list[Path]:
    """The cgroup directories (one per mounted hierarchy) that process `pid` is in, read from /proc."""
    # (controllers, or {""} for v2; hierarchy root; mount point)
    mounts: list[tuple[set[str], str, Path]] = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            fstype, _source, opts = (post.split() + ["", ""])[:3]
            fields = pre.split()
            if fstype == "cgroup2":
                mounts.append(({""}, fields[3], Path(fields[4])))
            elif fstype == "cgroup":
                mounts.append((set(opts.split(",")), fields[3], Path(fields[4])))
    dirs = []
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            wanted = set(controllers.split(",")) if controllers else {""}
            for have, root, point in mounts:
                if wanted <= have and (path == root or path.startswith(root.rstrip("/") + "/")):
                    dirs.append(point / path[len(root.rstrip("/")) :].lstrip("/"))
                    break
    return dirs


class Leftovers:
    """What a test's containers may leave behind: processes carrying `mark` in their environment (put
    `env` in the spec), processes in the shim sessions and cgroups recorded here."""

    def __init__(self) -> None:
        self.mark = f"AIRSIDE_TEST_MARK={uuid.uuid4().hex}"
        self.sessions: list[int] = []
        self.cgroups: list[Path] = []

    @property
    def env(self) -> dict[str, str]:
        key, _, value = self.mark.partition("=")
        return {key: value}

    def processes(self) -> list[int]:
        return live_processes(self.mark, self.sessions)

    def live_cgroups(self) -> list[Path]:
        return [d for d in self.cgroups if d.exists()]

    def clean(self) -> None:
        for pid in self.processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        wait_for(lambda: not self.processes(), 10, "leftover processes to die")
        for d in self.live_cgroups():
            try:
                d.rmdir()
            except OSError:
                pass


@pytest.fixture
def leftovers() -> Iterator[Leftovers]:
    """Kills whatever a test's containers left running (a broken destroy() must not leak `sleep 600`)."""
    lo = Leftovers()
    yield lo
    lo.clean()
