"""Draining on a real cluster: deleting a worker pod retires the worker; the pod stays Terminating while its
task runs (it is watched holding on for a while, then the test opens the gate the task waits at), and the
build succeeds on that pod. A rolling restart of the workers under a stream of tasks loses no build. (The
drain timeout case is test_drain_timeout.py: a release of its own.)"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import GATE, SAMPLE_ROOTFS, Release, gate_sh, wait_for, write_task

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]
HOLD = 20  # seconds a drained pod must be seen holding on to its running task


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


def drain_events(rel: Release, pod: str) -> list[dict]:
    """The worker's `draining` log events (JSON lines)."""
    events = []
    for line in rel.logs(pod).splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if isinstance(e, dict) and e.get("event") == "draining":
            events.append(e)
    return events


def test_deleting_a_worker_pod_drains_it_and_the_build_succeeds(rel: Release, tmp_path: Path) -> None:
    t = write_task(tmp_path / "task.yml", f"""
platform: linux
rootfs_uri: {SAMPLE_ROOTFS}
outputs: [{{name: {GATE}}}]
run: {{path: sh, args: [-c, 'echo started; {gate_sh()}; echo finished']}}
""")
    log = tmp_path / "ex.log"
    ex = rel.cli_background("execute", "-c", str(t), "--tag", "e2e", log=log)
    try:
        wait_for(lambda: "started" in log.read_text(), 180, "the task running")
        b = rel.running_build()
        assert b, f"no running build while its task runs: {rel.builds(5)}"
        pod = b["worker_name"]
        uid = rel.kj("get", "pod", pod)["metadata"]["uid"]
        old_epoch = rel.workers()[pod]["boot_epoch"]
        rel.k("delete", "pod", pod, "--wait=false")
        deleted = time.monotonic()
        wait_for(lambda: rel.workers()[pod]["state"] == "retiring", 30, f"{pod} retiring")
        drains = wait_for(lambda: drain_events(rel, pod), 60, f"{pod} logging that it drains")
        assert [(e["action"], e["running"]) for e in drains] == [("retire", 1)], drains
        # the drain holds the pod for as long as its task runs, not for some seconds: for HOLD seconds after the
        # delete it is the same pod, Terminating, its worker retiring and the build running on it (checked every
        # second, so a worker that gave up after a few seconds fails here); then the test lets the task end
        while time.monotonic() - deleted < HOLD:
            meta = rel.kj("get", "pod", pod)["metadata"]
            assert meta.get("deletionTimestamp"), f"{pod} should be Terminating while its task runs"
            assert meta["uid"] == uid, f"{pod} was replaced ({uid} -> {meta['uid']}) while its task should run"
            state = rel.workers().get(pod, {}).get("state")
            assert state == "retiring", f"{pod} is {state or 'gone from the registry'} while its task should run"
            now = next(x for x in rel.builds(10) if x["id"] == b["id"])
            assert (now["status"], now["worker_name"]) == ("running", pod), now
            assert ex.poll() is None and "finished" not in log.read_text(), log.read_text()
            time.sleep(1)  # the poll interval of this deadline loop
        rel.open_gate(pod, b)  # through the same pod: its container is still up
        assert ex.wait(300) == 0, log.read_text()
    finally:
        if ex.poll() is None:
            ex.kill()
    out = log.read_text()
    assert "started" in out and "finished" in out and "succeeded" in out
    done = rel.builds(5)
    assert [(x["status"], x["attempt"], x["worker_name"]) for x in done if x["id"] == b["id"]] == [
        ("succeeded", 1, pod)], done  # on the drained pod, not requeued elsewhere
    wait_for(lambda: f'"worker": "{pod}", "why": "retired"' in rel.logs(f"deploy/{rel.fullname}-web"), 60,
             f"{pod} leaving the registry")
    # the StatefulSet brings the pod back with an empty disk: a new worker, a new boot epoch
    wait_for(lambda: rel.workers().get(pod, {}).get("boot_epoch") not in (None, old_epoch), 240,
             f"{pod} back with a new boot epoch")


def test_rolling_restart_under_a_stream_of_tasks_loses_no_build(rel: Release, tmp_path: Path) -> None:
    rel.wait_running_workers({rel.worker_pod(0), rel.worker_pod(1)})
    t = task(tmp_path, 6)
    sts = f"{rel.fullname}-worker"
    procs = []

    def submit() -> Path:
        log = tmp_path / f"ex{len(procs)}.log"
        procs.append(rel.cli_background("execute", "-c", str(t), "--tag", "e2e", log=log))
        wait_for(lambda: re.search(r"build \d+ created", log.read_text()), 120, f"{log.name}: the build created")
        return log

    def rolled_out() -> bool:
        s = rel.kj("get", "statefulset", sts)
        st = s["status"]
        return (st.get("observedGeneration") == s["metadata"]["generation"]
                and st.get("currentRevision") == st.get("updateRevision")
                and st.get("updatedReplicas") == st.get("readyReplicas") == s["spec"]["replicas"])

    for _ in range(3):
        submit()
    wait_for(lambda: rel.running_build(), 120, "a task running")
    rel.k("rollout", "restart", f"statefulset/{sts}")
    # keep submitting while the pods restart one by one, each task once the one before it started on a worker,
    # until the rollout is complete
    during = 0
    while not rolled_out():
        log = submit()
        during += 1
        assert during <= 40, "the rollout did not complete within 40 submissions"
        wait_for(lambda log=log: "started" in log.read_text() or rolled_out(), 600,
                 f"{log.name}: the task started (or the rollout done)")
    assert during >= 2, f"only {during} task(s) submitted during the rollout"
    print(f"{len(procs)} tasks, {during} of them submitted during the rollout")
    rel.k("rollout", "status", f"statefulset/{sts}", "--timeout=600s")
    codes = [p.wait(900) for p in procs]
    logs = {i: (tmp_path / f"ex{i}.log").read_text() for i in range(len(procs))}
    assert codes == [0] * len(procs), {i: logs[i][-800:] for i, c in enumerate(codes) if c}
    bs = rel.builds(len(procs) + 10)
    assert all(b["status"] == "succeeded" for b in bs[: len(procs)]), [(b["id"], b["status"], b["reason"]) for b in bs]
