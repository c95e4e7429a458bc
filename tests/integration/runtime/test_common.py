"""Behaviour every local runtime shares (oci with real runc, and process), through the Runtime interface."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from airside.runtime import ContainerSpec, ExitStatus, Mount, RuntimeError_

from .conftest import (
    IS_ROOT,
    Leftovers,
    cgroup_dirs,
    collect,
    live_processes,
    needs_runc,
    runtime,
    start_in_doomed_worker,
)

pytestmark = pytest.mark.timeout(120)

KINDS = [
    pytest.param("oci", marks=[pytest.mark.root, needs_runc]),
    pytest.param("process"),
]


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def rt(kind: str, state_dir: Path, destroy_all: list):
    r = runtime(kind, state_dir)
    destroy_all.append(r)
    return r


@pytest.fixture
def mkspec(kind: str, busybox_rootfs: Path):
    def make(handle: str, script: str, **kw) -> ContainerSpec:
        # the process runtime runs host programs: /bin/sh on the host; oci: busybox sh in the rootfs
        return ContainerSpec(
            handle=handle,
            rootfs=busybox_rootfs if kind == "oci" else None,
            path="/bin/sh",
            args=["-c", script],
            **kw,
        )

    return make


def run(rt, spec: ContainerSpec) -> tuple[ExitStatus, dict[str, bytes]]:
    rt.prepare(spec)
    assert rt.status(spec.handle) == "prepared"
    rt.start(spec.handle)
    out = collect(rt, spec.handle)
    status = rt.wait(spec.handle)
    assert rt.status(spec.handle) == "exited"
    return status, out


@pytest.mark.parametrize("code", [0, 3])
def test_exit_code_is_propagated(rt, mkspec, code: int) -> None:
    status, _ = run(rt, mkspec(f"exit{code}", f"exit {code}"))
    assert status == ExitStatus(code=code, reason="")


def test_stdin_is_what_the_spec_gives_else_empty(rt, mkspec) -> None:
    """A resource script reads its JSON request on stdin (the resource protocol); a task reads nothing."""
    request = '{"source": {"uri": "x"}, "version": {"ref": "abc"}}\n' * 3000  # larger than a pipe buffer
    status, out = run(rt, mkspec("stdin", "cat; echo done >&2", stdin=request))
    assert status.code == 0 and out["stdout"] == request.encode() and out["stderr"] == b"done\n"
    status, out = run(rt, mkspec("nostdin", "cat; echo done >&2"))
    assert status.code == 0 and out["stdout"] == b""


def test_stdout_and_stderr_are_captured_as_streams(rt, mkspec) -> None:
    status, out = run(rt, mkspec("streams", "echo to-out; echo to-err >&2; echo more-out"))
    assert status.code == 0
    assert out["stdout"] == b"to-out\nmore-out\n"
    assert out["stderr"] == b"to-err\n"


def test_output_order_is_preserved_within_a_stream(rt, mkspec) -> None:
    status, out = run(rt, mkspec("order", "i=0; while [ $i -lt 2000 ]; do echo line$i; i=$((i+1)); done"))
    assert status.code == 0
    assert out["stdout"].decode().split() == [f"line{i}" for i in range(2000)]


def test_env_comes_from_params_with_a_default_path(rt, mkspec) -> None:
    status, out = run(
        rt,
        mkspec("env", 'echo "$GREETING|$EMPTY|"; echo "$PATH"', env={"GREETING": "hello world", "EMPTY": ""}),
    )
    assert status.code == 0
    greeting, path = out["stdout"].decode().splitlines()
    assert greeting == "hello world||"
    assert "/bin" in path.split(":")


def test_dir_is_honoured_and_created(rt, mkspec, tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    vol.mkdir()
    spec = mkspec(
        "dir", "echo here > marker; pwd", dir="/tmp/build/work/sub", mounts=[Mount(vol, "/tmp/build/work")]
    )
    status, out = run(rt, spec)
    assert status.code == 0
    assert (vol / "sub" / "marker").read_text() == "here\n"


@pytest.mark.skipif(not IS_ROOT, reason="running as another user needs root")
def test_user_is_honoured(rt, kind, mkspec, tmp_path: Path) -> None:
    user, uid = ("user", "1000") if kind == "oci" else ("nobody", "65534")
    status, out = run(rt, mkspec("user", "id -u", user=user))
    assert (status.code, out["stdout"].strip()) == (0, uid.encode())


def test_bind_mounts_follow_the_read_only_flag(rt, kind, mkspec, tmp_path: Path) -> None:
    rw, ro = tmp_path / "rw", tmp_path / "ro"
    rw.mkdir(), ro.mkdir()
    (ro / "input.txt").write_text("from the host\n")
    mounts = [Mount(rw, "/mnt/out"), Mount(ro, "/mnt/in", read_only=True)]
    script = "cat /mnt/in/input.txt; echo written > /mnt/out/result; echo nope > /mnt/in/new && echo ro-write-worked"
    if kind == "process":  # no isolation: mounts are symlinks under the container root, reached from its cwd
        script = script.replace("/mnt/", "../mnt/")
    with capture_logs() as logs:
        status, out = run(rt, mkspec("mounts", script, mounts=mounts, dir="/work"))
    assert out["stdout"].startswith(b"from the host\n")
    assert (rw / "result").read_text() == "written\n"
    if kind == "oci":
        assert b"ro-write-worked" not in out["stdout"]
        assert b"Read-only file system" in out["stderr"]
        assert not (ro / "new").exists()
    else:  # the process runtime cannot honour the flag: it says so, and the write goes through
        warned = [e for e in logs if e["event"] == "process runtime ignores limits, read-only mounts and privileged"]
        assert [e["read_only"] for e in warned] == [["/mnt/in"]], logs
        assert b"ro-write-worked" in out["stdout"]
        assert (ro / "new").read_text() == "nope\n"


def test_signal_aborts_a_running_task(rt, mkspec) -> None:
    rt.prepare(mkspec("abort", "echo ready; exec sleep 600"))
    rt.start("abort")
    logs = rt.logs("abort")
    assert next(logs).data == b"ready\n"
    assert rt.status("abort") == "running"
    rt.signal("abort", signal.SIGKILL)
    assert rt.wait("abort") == ExitStatus(137, "killed by SIGKILL")
    assert list(logs) == []


def test_wait_with_timeout_returns_none_while_running(rt, mkspec) -> None:
    rt.prepare(mkspec("timeout", "echo ready; exec sleep 600"))
    rt.start("timeout")
    assert next(rt.logs("timeout")).data == b"ready\n"
    assert rt.wait("timeout", timeout=0.2) is None
    rt.destroy("timeout")


def _pid(path: Path) -> int:
    return int(path.read_text().split()[0])


def assert_nothing_left(kind: str, state_dir: Path, handle: str, left: Leftovers) -> None:
    """After destroy(): no process of the container (by its environment mark, or in the shim's session)
    lives on, its cgroups are gone, and a second runtime over the same state dir sees no container."""
    assert left.processes() == [], f"{handle}: processes outlived destroy()"
    assert left.live_cgroups() == [], f"{handle}: cgroups outlived destroy()"
    again = runtime(kind, state_dir)
    assert (again.status(handle), again.list()) == ("missing", [])
    if kind == "oci":  # and runc itself knows no such container
        r = subprocess.run(["runc", "--root", str(state_dir / ".runc"), "state", handle], capture_output=True)
        assert r.returncode != 0, r.stdout


def test_destroy_is_idempotent_and_kills(rt, kind, state_dir: Path, mkspec, leftovers: Leftovers) -> None:
    rt.destroy("never-existed")
    # a child in the background too: destroy must take the whole container, not only its main process
    rt.prepare(mkspec("doomed", "sleep 600 & echo ready; wait", env=leftovers.env))
    rt.start("doomed")
    assert next(rt.logs("doomed")).data == b"ready\n"
    task = _pid(rt.cdir("doomed") / "pid")
    leftovers.sessions.append(_pid(rt.cdir("doomed") / "shim.pid"))
    running = live_processes(leftovers.mark)
    assert task in running and len(running) == 2, running  # sh and its sleep, found by their mark
    if kind == "oci":  # (the process runtime's tasks share the worker's cgroups)
        leftovers.cgroups = cgroup_dirs(task)
        assert leftovers.cgroups, "no cgroup found for the container"
        assert all(str(task) in (d / "cgroup.procs").read_text().split() for d in leftovers.cgroups)
    rt.destroy("doomed")
    assert rt.status("doomed") == "missing"
    assert "doomed" not in rt.list()
    assert_nothing_left(kind, state_dir, "doomed", leftovers)
    rt.destroy("doomed")
    rt.prepare(mkspec("prepared-only", "true"))
    rt.destroy("prepared-only")
    assert rt.status("prepared-only") == "missing"


def test_destroy_right_after_start_leaves_nothing_running(
    rt, kind, state_dir: Path, mkspec, leftovers: Leftovers
) -> None:
    rt.prepare(mkspec("racy", "exec sleep 600", env=leftovers.env))
    rt.start("racy")
    leftovers.sessions.append(_pid(rt.cdir("racy") / "shim.pid"))  # recorded before start() returns
    rt.destroy("racy")  # while the task may still be being created
    assert rt.status("racy") == "missing"
    # the shim's whole session is gone too, so nothing is left that could still create the task
    assert_nothing_left(kind, state_dir, "racy", leftovers)


def test_missing_program_is_a_runtime_error(rt, kind, mkspec) -> None:
    spec = mkspec("noprog", "")
    spec = ContainerSpec(handle="noprog", rootfs=spec.rootfs, path="/no/such/program")
    rt.prepare(spec)
    rt.start("noprog")
    with pytest.raises(RuntimeError_, match="(?i)no such file"):
        rt.wait("noprog")


def test_prepare_twice_and_bad_handles_are_errors(rt, mkspec) -> None:
    rt.prepare(mkspec("twice", "true"))
    with pytest.raises(RuntimeError_, match="already exists"):
        rt.prepare(mkspec("twice", "true"))
    with pytest.raises(RuntimeError_, match="invalid container handle"):
        rt.prepare(mkspec("../escape", "true"))


def test_containers_survive_a_worker_restart(
    kind, state_dir: Path, mkspec, tmp_path: Path, destroy_all
) -> None:
    sync = tmp_path / "sync"
    sync.mkdir()
    destroy_all.append(runtime(kind, state_dir))  # cleans up even if the test fails early
    script = "echo first; echo err-first >&2; while [ ! -e go ]; do sleep 0.05; done; echo second; exit 7"
    start_in_doomed_worker(
        kind, state_dir, mkspec("survivor", script, dir="/sync", mounts=[Mount(sync, "/sync")])
    )
    # the worker died with -9; a new one starts over the same state dir
    rt = runtime(kind, state_dir)
    assert rt.list() == ["survivor"]
    assert rt.status("survivor") == "running"
    logs = rt.logs("survivor")
    seen = {"stdout": b"", "stderr": b""}
    while seen["stdout"] != b"first\n" or seen["stderr"] != b"err-first\n":
        chunk = next(logs)
        seen[chunk.stream] += chunk.data
    (sync / "go").write_text("")
    for chunk in logs:
        seen[chunk.stream] += chunk.data
    assert seen == {"stdout": b"first\nsecond\n", "stderr": b"err-first\n"}
    assert rt.wait("survivor") == ExitStatus(7, "")
    # and a replay after the exit gives the same output again
    assert collect(rt, "survivor") == seen
    rt.destroy("survivor")
    assert rt.list() == []


def test_handles_run_concurrently_from_threads(rt, mkspec) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def one(i: int) -> tuple[ExitStatus, dict[str, bytes]]:
        return run(rt, mkspec(f"par{i}", f"echo n{i}; exit {i}"))

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, range(4)))
    assert [(s.code, o["stdout"]) for s, o in results] == [(i, f"n{i}\n".encode()) for i in range(4)]
    assert rt.list() == [f"par{i}" for i in range(4)]
