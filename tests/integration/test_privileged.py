"""Privileged tasks on workers (issue 16 items 7 and 9): `airside execute -p` carries a privileged flag from
the API through the database to the worker's assignment; a worker runs it privileged (every capability) only
when its operator set allow_privileged_tasks, and otherwise errors the build naming that setting."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.procs import WebProc, WorkerProc, run_cli, state_of, wait_for
from tests.rootfs import busybox_path

pytestmark = [pytest.mark.root, pytest.mark.timeout(180),
              pytest.mark.skipif(os.geteuid() != 0 or shutil.which("runc") is None or busybox_path() is None,
                                 reason="the oci runtime needs root, runc and busybox-static")]



# busybox_image and web: tests/integration/conftest.py


def _worker(web: WebProc, tmp_path: Path, allow: bool) -> WorkerProc:
    wk = WorkerProc(tmp_path, web, "w1", worker_runtime="oci", allow_privileged_tasks=str(allow).lower()).start()
    wait_for(lambda: state_of(web.client(), "w1") == "running", what="worker running")
    return wk


def _task(tmp_path: Path, image: Path) -> Path:
    path = tmp_path / "task.yml"
    path.write_text(f"platform: linux\nrootfs_uri: {image}\n"
                    "run: {path: /bin/sh, args: [-c, 'grep CapEff /proc/self/status']}\n")
    return path


def _cap_eff(stdout: str) -> str:
    return next(line.split()[1] for line in stdout.splitlines() if line.startswith("CapEff:"))


def test_execute_p_runs_privileged_where_the_worker_allows_it(web: WebProc, tmp_path: Path,
                                                              busybox_image: Path) -> None:
    host = next(line.split()[1] for line in Path("/proc/self/status").read_text().splitlines()
                if line.startswith("CapBnd:"))
    wk = _worker(web, tmp_path, allow=True)
    try:
        task = _task(tmp_path, busybox_image)
        r = run_cli(web, "execute", "-p", "-c", str(task))
        assert r.returncode == 0, r.stdout + r.stderr + wk.output()[-2000:]
        assert _cap_eff(r.stdout) == host  # every capability the worker holds
        r = run_cli(web, "execute", "-c", str(task))  # without -p: Docker's default set, far fewer
        assert r.returncode == 0, r.stdout + r.stderr
        assert int(_cap_eff(r.stdout), 16) < int(host, 16)
    finally:
        wk.stop()


def test_privileged_is_refused_naming_the_setting(web: WebProc, tmp_path: Path, busybox_image: Path) -> None:
    wk = _worker(web, tmp_path, allow=False)
    try:
        r = run_cli(web, "execute", "--privileged", "-c", str(_task(tmp_path, busybox_image)))
        assert r.returncode == 3, r.stdout + r.stderr
        out = r.stdout + r.stderr
        assert "privileged tasks are not allowed on this worker" in out and "allow_privileged_tasks" in out, out
        assert "CapEff" not in out  # it never ran
    finally:
        wk.stop()
