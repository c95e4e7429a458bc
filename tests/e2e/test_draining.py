"""Draining on a real cluster: deleting a worker pod retires the worker; the pod stays Terminating while its
task finishes, and the build succeeds. A rolling restart of the workers under a stream of tasks loses no
build. (The drain timeout case is test_drain_timeout.py: a release of its own.)"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import SAMPLE_ROOTFS, Release, wait_for, write_task

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def rel(release_factory) -> Release:  # noqa: ANN001
    r = release_factory("drain")
    r.wait_running_workers({r.worker_pod(0), r.worker_pod(1)})
    return r


def task(tmp: Path, seconds: int, name: str = "task.yml") -> Path:
    return write_task(tmp / name, f"""
platform: linux
rootfs_uri: {SAMPLE_ROOTFS}
run: {{path: sh, args: [-c, 'echo started; sleep {seconds}; echo finished']}}
""")


def running_build(rel: Release) -> dict | None:
    bs = json.loads(rel.cli("builds", "--json").stdout or "[]")
    return next((b for b in bs if b["status"] == "running"), None)


def test_deleting_a_worker_pod_drains_it_and_the_build_succeeds(rel: Release, tmp_path: Path) -> None:
    ex = rel.cli_background("execute", "-c", str(task(tmp_path, 60)), "--tag", "e2e", log=tmp_path / "ex.log")
    b = wait_for(lambda: running_build(rel), 180, "the 60 s task running")
    pod = b["worker_name"]
    old_epoch = rel.workers()[pod]["boot_epoch"]
    rel.k("delete", "pod", pod, "--wait=false")
    wait_for(lambda: rel.workers()[pod]["state"] == "retiring", 30, f"{pod} retiring")
    time.sleep(20)  # the task has ~40 s to go: the pod must still be there, Terminating
    meta = rel.kj("get", "pod", pod)["metadata"]
    assert meta.get("deletionTimestamp"), f"{pod} should be Terminating while its task runs"
    assert meta["uid"]  # the same pod, not a replacement
    assert ex.wait(300) == 0, (tmp_path / "ex.log").read_text()
    out = (tmp_path / "ex.log").read_text()
    assert "started" in out and "finished" in out and "succeeded" in out
    wait_for(lambda: f'"worker": "{pod}", "why": "retired"' in rel.logs(f"deploy/{rel.fullname}-web"), 60,
             f"{pod} leaving the registry")
    # the StatefulSet brings the pod back with an empty disk: a new worker, a new boot epoch
    wait_for(lambda: rel.workers().get(pod, {}).get("boot_epoch") not in (None, old_epoch), 240,
             f"{pod} back with a new boot epoch")


def test_rolling_restart_under_a_stream_of_tasks_loses_no_build(rel: Release, tmp_path: Path) -> None:
    rel.wait_running_workers({rel.worker_pod(0), rel.worker_pod(1)})
    t = task(tmp_path, 6)
    procs = []
    for i in range(3):
        procs.append(rel.cli_background("execute", "-c", str(t), "--tag", "e2e", log=tmp_path / f"ex{i}.log"))
    wait_for(lambda: running_build(rel), 120, "a task running")
    rel.k("rollout", "restart", f"statefulset/{rel.fullname}-worker")
    for i in range(3, 8):  # keep submitting while pods restart one by one
        procs.append(rel.cli_background("execute", "-c", str(t), "--tag", "e2e", log=tmp_path / f"ex{i}.log"))
        time.sleep(4)
    rel.k("rollout", "status", f"statefulset/{rel.fullname}-worker", "--timeout=600s")
    codes = [p.wait(900) for p in procs]
    logs = {i: (tmp_path / f"ex{i}.log").read_text() for i in range(len(procs))}
    assert codes == [0] * len(procs), {i: logs[i][-800:] for i, c in enumerate(codes) if c}
    bs = json.loads(rel.cli("builds", "--json", "-n", "50").stdout)
    assert all(b["status"] == "succeeded" for b in bs[: len(procs)]), [(b["id"], b["status"], b["reason"]) for b in bs]
