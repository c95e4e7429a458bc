"""Draining meets builds; lost workers; re-attaching after a worker restart; worker-side GC."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.procs import WebProc, WorkerProc, state_of, wait_for


def task_file(tmp: Path, script: str, name: str = "task.yml") -> Path:
    p = tmp / name
    p.write_text(textwrap.dedent(f"""
        platform: linux
        rootfs_uri: /
        run: {{path: sh, args: [-c, {script!r}]}}
    """))
    return p


def gate(tmp: Path) -> tuple[str, Path]:
    """A task step that waits for the file `go`, which the test creates once what it must see while the task
    runs has happened (instead of a guess of how long that takes); the task gives up (exit 9) after 60 s."""
    go = tmp / "go"
    return f"for i in $(seq 600); do [ -e {go} ] && break; sleep 0.1; done; [ -e {go} ] || exit 9", go


def start_execute(web: WebProc, task: Path, log: Path) -> subprocess.Popen:
    env = {"AIRSIDE_WEB_URL": web.url, "AIRSIDE_TOKEN": web.TOKEN, "PATH": "/usr/bin:/bin"}
    return subprocess.Popen([sys.executable, "-m", "airside.cli", "execute", "-c", str(task)], env=env,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)


def running_build(web: WebProc):  # noqa: ANN201
    bs = web.client().builds()
    return bs[0] if bs and bs[0].status == "running" else None


@pytest.fixture
def web(tmp_path: Path):
    w = WebProc(tmp_path, heartbeat_ttl=2, requeue_budget=0).start()
    yield w
    w.stop()


def worker(tmp: Path, web: WebProc, name: str, **kw) -> WorkerProc:  # noqa: ANN003
    wk = WorkerProc(tmp, web, name, **kw).start()
    wait_for(lambda: state_of(web.client(), name) == "running", what=f"{name} running")
    return wk


def test_landing_worker_finishes_its_running_task(web: WebProc, tmp_path: Path) -> None:
    wk = worker(tmp_path, web, "w1", drain_timeout=60)
    wait_go, go = gate(tmp_path)
    ex = start_execute(web, task_file(tmp_path, f"echo start; {wait_go}; echo finished"), tmp_path / "ex.log")
    wait_for(lambda: running_build(web), what="task running")
    wk.signal(signal.SIGUSR1)  # land
    wait_for(lambda: state_of(web.client(), "w1") == "landing", what="landing")
    assert ex.poll() is None and wk.alive(), "the task must still be running while its worker lands"
    go.touch()
    assert ex.wait(60) == 0, (tmp_path / "ex.log").read_text()
    assert wk.wait(30) == 0
    assert state_of(web.client(), "w1") == "landed"
    assert "finished" in (tmp_path / "ex.log").read_text()
    assert web.client().builds()[0].status == "succeeded"


def test_drain_timeout_errors_the_build_with_the_reason(web: WebProc, tmp_path: Path) -> None:
    wk = worker(tmp_path, web, "w1", drain_timeout=1, ephemeral=True)
    ex = start_execute(web, task_file(tmp_path, "sleep 60"), tmp_path / "ex.log")
    wait_for(lambda: running_build(web), what="task running")
    wk.signal(signal.SIGTERM)  # ephemeral: retire
    assert ex.wait(60) == 3
    b = web.client().builds()[0]
    assert b.status == "errored"
    assert b.reason == "worker w1 was retiring and drain timeout (1s) passed"
    assert "errored: worker w1 was retiring and drain timeout (1s) passed" in (tmp_path / "ex.log").read_text()
    assert wk.wait(30) == 0 and state_of(web.client(), "w1") is None


def test_killed_worker_errors_its_build_when_no_requeue_budget(web: WebProc, tmp_path: Path) -> None:
    wk = worker(tmp_path, web, "w1")
    ex = start_execute(web, task_file(tmp_path, "sleep 60"), tmp_path / "ex.log")
    wait_for(lambda: running_build(web), what="task running")
    wk.signal(signal.SIGKILL)
    assert ex.wait(60) == 3
    b = web.client().builds()[0]
    assert (b.status, b.reason[:19]) == ("errored", "worker w1 stalled (")
    wk.stop()


def test_killed_worker_build_is_requeued_on_another_worker(tmp_path: Path) -> None:
    web = WebProc(tmp_path, heartbeat_ttl=2, requeue_budget=1).start()
    try:
        w1 = worker(tmp_path, web, "w1")
        wait_go, go = gate(tmp_path)
        ex = start_execute(web, task_file(tmp_path, f"echo attempt; {wait_go}; echo ok"), tmp_path / "ex.log")
        wait_for(lambda: running_build(web), what="task running on w1")
        w2 = worker(tmp_path, web, "w2")
        w1.signal(signal.SIGKILL)
        w1.wait()
        go.touch()  # the first attempt cannot have ended on w1: w1 is gone
        assert ex.wait(90) == 0, (tmp_path / "ex.log").read_text()
        b = web.client().builds()[0]
        assert (b.status, b.worker_name, b.attempt, b.requeues) == ("succeeded", "w2", 2, 1)
        assert "requeued (1/1): worker w1 stalled" in (tmp_path / "ex.log").read_text()
        w1.stop()
        w2.stop()
    finally:
        web.stop()


def test_worker_restart_reattaches_and_keeps_streaming(tmp_path: Path) -> None:
    web = WebProc(tmp_path, heartbeat_ttl=10, requeue_budget=0).start()
    try:
        wk = worker(tmp_path, web, "w1")
        wait_go, go = gate(tmp_path)
        ex = start_execute(web, task_file(tmp_path, f"echo before; {wait_go}; echo after-restart"),
                           tmp_path / "ex.log")
        wait_for(lambda: "before" in (tmp_path / "ex.log").read_text(), what="first output")
        wk.signal(signal.SIGKILL)
        wk.wait()
        wk.start()  # same work dir: same boot epoch; the container kept running
        wait_for(lambda: "re-attaching to build" in wk.output(), 30, "the restarted worker to re-attach")
        go.touch()  # what the task prints now, only the re-attached worker can stream
        assert ex.wait(60) == 0, (tmp_path / "ex.log").read_text()
        out = (tmp_path / "ex.log").read_text()
        assert out.count("before") == 1 and "after-restart" in out  # each byte once
        assert "re-attaching to build" in wk.output()
        wk.stop()
    finally:
        web.stop()


def test_reaper_destroys_orphans_and_keeps_what_is_in_use(tmp_path: Path) -> None:
    web = WebProc(tmp_path, heartbeat_ttl=10).start()
    try:
        wk = worker(tmp_path, web, "w1", reaper_interval=0.5)
        wait_go, go = gate(tmp_path)
        ex = start_execute(web, task_file(tmp_path, f"{wait_go}; echo survived"), tmp_path / "ex.log")
        wait_for(lambda: running_build(web), what="task running")
        # an orphan volume (no owner) and an orphan container-like volume of a build that does not exist
        from airside.baggageclaim.client import VolumeClient

        w = web.client().worker("w1")
        token = (Path(wk.settings["data_dir"]) / "baggageclaim-token").read_text().strip()
        with VolumeClient(w.baggageclaim_url, token) as vc:
            vc.create(handle="orphan-1", properties={})
            vc.create(handle="b999.1-in-x", properties={"role": "input", "build": "999", "attempt": "1"})
            wait_for(lambda: not {"orphan-1", "b999.1-in-x"} & {v.handle for v in vc.list()}, timeout=10,
                     what="orphans destroyed")
        assert running_build(web), "the reaper's pass must have run while the build was running"
        go.touch()
        assert ex.wait(60) == 0, (tmp_path / "ex.log").read_text()  # the running build's things were kept
        assert "survived" in (tmp_path / "ex.log").read_text()
        wk.stop()
    finally:
        web.stop()
