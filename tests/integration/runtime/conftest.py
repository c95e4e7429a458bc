"""Fixtures for runtime tests: a busybox rootfs, runtimes over temporary state dirs, helpers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from airside.runtime import ContainerSpec, Runtime, get_runtime
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
