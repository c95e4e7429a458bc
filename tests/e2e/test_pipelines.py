"""Pipelines end to end on kind (issue 17 item 8): one release with workers and the Kubernetes Job runtime
(as test_attempt_outcomes), the `airside` CLI on the host. The same job shape — an in_parallel of two task
steps, one producing an output the next step reads, a failing step inside `try`, an `ensure` hook — runs
once with every step a Kubernetes Job (tagged `kubernetes`) and once with every step on a worker (tagged
`e2e`): set-pipeline -n, unpause-pipeline, `trigger-job -w` exits 0 printing each step's log prefixed with
its name, `builds -j --json` says succeeded, and nothing of the build is left (no Job, pod or Secret; no
artifact-store or worker volume). Then an abort: `abort-build -j P/J -b N` while a step waits at a gate as a
Job ends the build aborted, deletes the Job's pod and starts nothing after it.

Catches: a step's inputs not linked from the step that produced them (the reader errors or reads nothing);
`try`/`ensure` not applied on a real plan; step logs not reaching the watcher with their step's name; a
step sent to the wrong runtime (tags); Jobs, pods or artifact-store volumes of pipeline steps left behind;
the Kubernetes dispatcher not acting on an abort (the pod keeps running, the build never ends)."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import IMAGE_REPO, IMAGE_TAG, SAMPLE_ROOTFS, Release, gate_sh, wait_for, web_get

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

RUNTIMES = ("kubernetes", "worker")
TAG = {"kubernetes": "kubernetes", "worker": "e2e"}  # `kubernetes` is web's kubernetes_tag; workers are e2e
IMAGE: dict[str, dict[str, Any]] = {
    "kubernetes": {"image_resource": {"type": "registry-image",
                                      "source": {"repository": IMAGE_REPO, "tag": IMAGE_TAG}}},
    "worker": {"rootfs_uri": SAMPLE_ROOTFS},
}
MANAGED = "app.kubernetes.io/managed-by=airside"


@pytest.fixture(scope="module")
def rel(release_factory) -> Release:  # noqa: ANN001
    # workers are the deployment's runtime; the Job runtime is on too, for steps tagged `kubernetes`
    r = release_factory("pipes", {"worker": {"replicas": 1}, "kubernetesRuntime": {"enabled": True},
                                  "airside": {"web": {"runtime": "workers"}}})
    r.wait_running_workers({r.worker_pod(0)})
    return r


def task(runtime: str, name: str, script: str, **extra: Any) -> dict[str, Any]:
    io = {k: extra.pop(k) for k in ("inputs", "outputs") if k in extra}
    return {"task": name, "tags": [TAG[runtime]], **extra,
            "config": {"platform": "linux", **IMAGE[runtime], **io, "run": {"path": "sh", "args": ["-c", script]}}}


def set_pipeline(rel: Release, tmp: Path, name: str, config: dict[str, Any]) -> None:
    path = tmp / f"{name}.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    r = rel.cli("set-pipeline", "-p", name, "-c", str(path), "-n", timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    r = rel.cli("unpause-pipeline", "-p", name, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def started_name(text: str, job: str) -> str:
    m = re.search(rf"started {re.escape(job)} #(\S+)", text)
    assert m, text
    return m.group(1)


def job_build(rel: Release, job: str, name: str) -> dict[str, Any]:
    found = [b for b in rel.cli_json("builds", "-j", job, "-n", "20") if b["name"] == name]
    assert len(found) == 1, (name, found)
    return found[0]


def build(rel: Release, build_id: int) -> dict[str, Any]:
    r = web_get(rel, f"/api/v1/builds/{build_id}")
    r.raise_for_status()
    return r.json()


def step_builds(jb: dict[str, Any]) -> dict[str, int]:
    ids = {s["name"]: s["build_id"] for s in jb["steps"] if s["build_id"]}
    assert ids, jb
    return ids


def artifact_store_pod(rel: Release) -> str:
    return f"{rel.fullname}-artifacts-0"


def leftovers(rel: Release, build_ids: list[int], worker: bool) -> list[str]:
    """What is left of these builds: Jobs, pods and Secrets labelled with one of them, volumes of one of their
    attempts (`b<id>-a<n>-…`) in the cluster's artifact store and (`worker`) on the worker."""
    items = []
    for kind in ("jobs", "pods", "secrets"):
        items += [f"{kind}/{o['metadata']['name']}" for o in rel.kj("get", kind, "-l", MANAGED)["items"]
                  if o["metadata"]["labels"].get("airside.dev/build") in {str(i) for i in build_ids}]
    ours = re.compile(rf"^b({'|'.join(map(str, build_ids))})-a\d+-")
    pods = [artifact_store_pod(rel)] + ([rel.worker_pod(0)] if worker else [])
    items += [f"{pod}:{v['handle']}" for pod in pods for v in rel.volumes(pod) if ours.match(v["handle"])]
    return items


def assert_nothing_left(rel: Release, build_ids: list[int], worker: bool, timeout: float = 180) -> None:
    left: list[str] = []

    def none_left() -> bool:
        left[:] = leftovers(rel, build_ids, worker)
        return not left

    try:
        wait_for(none_left, timeout, f"nothing left of the builds {build_ids}", every=2)
    except AssertionError as e:
        raise AssertionError(f"{e}: still there: {left}") from None


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_pipeline_runs_end_to_end(rel: Release, tmp_path: Path, runtime: str) -> None:
    pipeline, token = f"shape-{runtime}", uuid.uuid4().hex[:12]  # the token: this run's, not a stale artifact's
    job = f"{pipeline}/build"
    set_pipeline(rel, tmp_path, pipeline, {"jobs": [{
        "name": "build",
        "plan": [
            {"in_parallel": [
                task(runtime, "make", f'echo making; echo "payload-{token}" > made/file', outputs=[{"name": "made"}]),
                task(runtime, "side", "echo side ran"),
            ]},
            task(runtime, "read", f'test "$(cat src/file)" = "payload-{token}"; echo "read: $(cat src/file)"',
                 inputs=[{"name": "src"}], input_mapping={"src": "made"}),
            {"try": task(runtime, "flaky", "echo flaky fails; exit 4")},
        ],
        "ensure": task(runtime, "cleanup", "echo ensure ran"),
    }]})

    r = rel.cli("trigger-job", "-j", job, "-w", timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    for line in ("[make] making", "[side] side ran", f"[read] read: payload-{token}", "[flaky] flaky fails",
                 "[cleanup] ensure ran"):
        assert line in lines, f"{line!r} not a line of:\n{r.stdout}\n{r.stderr}"

    jb = job_build(rel, job, started_name(r.stdout, job))
    assert jb["status"] == "succeeded", jb
    steps = {s["name"]: s["status"] for s in jb["steps"]}
    assert steps == {"make": "succeeded", "side": "succeeded", "read": "succeeded", "flaky": "failed",
                     "cleanup": "succeeded"}, jb["steps"]
    ids = step_builds(jb)
    for name, build_id in ids.items():
        b = build(rel, build_id)
        on_worker = b["worker_name"] is not None
        assert on_worker == (runtime == "worker"), (name, b)
    assert_nothing_left(rel, list(ids.values()), worker=runtime == "worker")


def test_abort_ends_the_build_aborted_and_deletes_the_jobs_pod(rel: Release, tmp_path: Path) -> None:
    pipeline, gate = "aborted", "/tmp/airside-e2e-gate"  # never opened: only the abort ends the step
    job = f"{pipeline}/held"
    set_pipeline(rel, tmp_path, pipeline, {"jobs": [{"name": "held", "plan": [
        task("kubernetes", "wait", f"echo at the gate; {gate_sh(gate)}; echo gate opened"),
        task("kubernetes", "after", "echo must not run"),
    ]}]})
    log = tmp_path / "watch.log"
    w = rel.cli_background("trigger-job", "-j", job, "-w", log=log)
    try:
        wait_for(lambda: "[wait] at the gate" in log.read_text(), 240, "the gated step running as a Job")
        name = started_name(log.read_text(), job)
        (wait_id,) = step_builds(job_build(rel, job, name)).values()
        pods = rel.kj("get", "pods", "-l", f"airside.dev/build={wait_id}")["items"]
        assert [p["status"]["phase"] for p in pods] == ["Running"], pods
        r = rel.cli("abort-build", "-j", job, "-b", name, timeout=120)
        assert r.returncode == 0 and "abort requested" in r.stdout, r.stdout + r.stderr
        try:
            wait_for(lambda: w.poll() is not None, 120, "trigger-job -w to end after the abort")
        except AssertionError as e:  # say where the step was: its pod, the watcher's last lines
            pods = rel.k("get", "pods", "-l", f"airside.dev/build={wait_id}", check=False)
            raise AssertionError(f"{e}\n{pods}\n{log.read_text()[-2000:]}") from None
        assert w.returncode == 130, log.read_text()[-3000:]
    finally:
        if w.poll() is None:
            w.kill()
    jb = job_build(rel, job, name)
    assert jb["status"] == "aborted", jb
    assert [(s["name"], s["status"], s["build_id"] is not None) for s in jb["steps"]] == [
        ("wait", "aborted", True)], jb["steps"]  # `after` never started
    assert build(rel, wait_id)["status"] == "aborted"
    text = log.read_text()
    assert "gate opened" not in text and "must not run" not in text, text
    wait_for(lambda: not rel.kj("get", "pods", "-l", f"airside.dev/build={wait_id}")["items"], 120,
             "the aborted step's pod deleted")
    assert_nothing_left(rel, [wait_id], worker=False, timeout=120)
