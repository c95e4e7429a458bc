"""README "Worker signals", last row: a second signal while draining stops now, through a real
`airside web` (SQLite) and a real `airside worker` process running a real build."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from airside.runtime import get_runtime
from tests.procs import WebProc, WorkerProc, state_of, wait_for

DRAIN_TIMEOUT = 300  # far beyond the test's deadlines: only the second signal can end the drain in time
AT_ONCE = 20.0  # the drain polls every 0.2 s; killing the task and reporting take a few seconds at most


@pytest.fixture
def web(tmp_path: Path):
    w = WebProc(tmp_path).start()  # the default requeue budget: a stopped build must not be requeued either
    yield w
    w.stop()


def start_execute(web: WebProc, tmp: Path, script: str) -> tuple[subprocess.Popen, Path]:
    task, log = tmp / "task.yml", tmp / "execute.log"
    task.write_text(textwrap.dedent(f"""
        platform: linux
        rootfs_uri: /
        run: {{path: sh, args: [-c, {script!r}]}}
    """))
    env = {"AIRSIDE_WEB_URL": web.url, "AIRSIDE_TOKEN": web.TOKEN, "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen([sys.executable, "-m", "airside.cli", "execute", "-c", str(task)], env=env,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)
    return proc, log


@pytest.mark.parametrize(
    ("first", "second", "ephemeral", "doing", "final"),
    [
        (signal.SIGTERM, signal.SIGUSR2, True, "retiring", None),
        (signal.SIGINT, signal.SIGTERM, False, "landing", "landed"),
    ],
)
def test_a_second_signal_stops_now_and_errors_the_running_build(
    web: WebProc, tmp_path: Path, first: int, second: int, ephemeral: bool, doing: str, final: str | None
) -> None:
    c = web.client()
    wk = WorkerProc(tmp_path, web, "w1", drain_timeout=DRAIN_TIMEOUT, ephemeral=ephemeral).start()
    containers = get_runtime("process", Path(wk.settings["work_dir"]) / "containers")
    ex: subprocess.Popen | None = None
    try:
        wait_for(lambda: state_of(c, "w1") == "running", what="w1 running")
        ex, log = start_execute(web, tmp_path, "echo started; exec sleep 600")
        wait_for(lambda: "started" in log.read_text(), 60, "the task's first line")
        wk.signal(first)
        wait_for(lambda: state_of(c, "w1") == doing, what=f"w1 {doing} after the first signal")
        # the first signal alone waits for the task (up to the drain timeout)
        assert [b.status for b in c.builds()] == ["running"] and wk.alive()
        sent = time.monotonic()
        wk.signal(second)
        b = wait_for(lambda: next((b for b in c.builds() if b.status != "running"), None), AT_ONCE,
                     f"the build to end at once after the second signal (drain timeout {DRAIN_TIMEOUT}s)\n"
                     f"{wk.output()[-3000:]}")
        took = time.monotonic() - sent
        assert (b.status, b.reason) == ("errored", f"worker w1 was {doing} and stopped"), f"after {took:.1f}s"
        assert len(c.builds()) == 1  # not requeued
        assert ex.wait(30) == 3
        assert f"errored: worker w1 was {doing} and stopped" in log.read_text()
        assert wk.wait(AT_ONCE) == 0
        assert state_of(c, "w1") == final
        assert containers.list() == []  # and the task is not left running
    finally:
        wk.stop()
        for handle in containers.list():  # whatever a failed run left (the task is a host process)
            containers.destroy(handle)
        if ex is not None and ex.poll() is None:
            ex.kill()
            ex.wait(10)
