"""The Kubernetes Job runtime end to end: a release with no workers; `airside execute` of a task with two
inputs and an output creates a Job whose init container fetches the inputs from the artifact store, the
logs stream back to the CLI, the exit code propagates, the output downloads, and the Job is cleaned up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.conftest import IMAGE_REPO, IMAGE_TAG, Release, wait_for, write_task

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def rel(release_factory) -> Release:  # noqa: ANN001
    return release_factory("k8s", {"kubernetesRuntime": {"enabled": True}, "worker": {"enabled": False},
                                   "artifactStore": {"persistence": {"enabled": True, "size": "1Gi"}}})


def jobs(rel: Release) -> list[dict]:
    return rel.kj("get", "jobs", "-l", "app.kubernetes.io/managed-by=airside")["items"]


def leftovers(rel: Release) -> list[str]:
    """Jobs, pods and Secrets of tasks still in the namespace."""
    items = []
    for kind in ("jobs", "pods", "secrets"):
        items += [f"{kind}/{o['metadata']['name']}" for o in
                  rel.kj("get", kind, "-l", "app.kubernetes.io/managed-by=airside")["items"]]
    return items


def test_a_task_with_two_inputs_and_an_output_runs_as_a_job(rel: Release, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "one.txt").write_text("first input\n")
    (tmp_path / "b" / "nested").mkdir(parents=True)
    (tmp_path / "b" / "nested" / "two.txt").write_text("second input\n")
    t = write_task(tmp_path / "task.yml", f"""
platform: linux
image_resource: {{type: registry-image, source: {{repository: {IMAGE_REPO}, tag: "{IMAGE_TAG}"}}}}
inputs: [{{name: a}}, {{name: b}}]
outputs: [{{name: result}}]
params: {{WHO: kubernetes}}
run:
  path: sh
  args: [-c, 'echo "hello from $WHO"; sleep 8; cat a/one.txt b/nested/two.txt > result/joined.txt; echo done']
""")
    ex = rel.cli_background("execute", "-c", str(t), "-i", f"a={tmp_path / 'a'}", "-i", f"b={tmp_path / 'b'}",
                            "-o", f"result={tmp_path / 'out'}", log=tmp_path / "ex.log")
    job = wait_for(lambda: jobs(rel) and jobs(rel)[0], 180, "the task's Job")
    spec = job["spec"]["template"]["spec"]
    assert job["spec"]["backoffLimit"] == 0 and spec["restartPolicy"] == "Never"
    assert [c["name"] for c in spec["initContainers"]][0] == "fetch-inputs"
    assert any(c["image"] == f"{IMAGE_REPO}:{IMAGE_TAG}" for c in spec["initContainers"] + spec["containers"])
    wait_for(lambda: "hello from kubernetes" in (tmp_path / "ex.log").read_text(), 180,
             "the task's log streaming back while it runs")
    assert ex.wait(600) == 0, (tmp_path / "ex.log").read_text()[-3000:]
    assert (tmp_path / "out" / "joined.txt").read_text() == "first input\nsecond input\n"
    assert "done" in (tmp_path / "ex.log").read_text()
    wait_for(lambda: not leftovers(rel), 180, "the Job, its pod and Secret cleaned up")
    b = json.loads(rel.cli("builds", "--json").stdout)[0]
    assert b["status"] == "succeeded" and b["worker_name"] is None


def test_exit_code_propagates_and_nothing_is_left(rel: Release, tmp_path: Path) -> None:
    t = write_task(tmp_path / "task.yml", f"""
platform: linux
image_resource: {{type: registry-image, source: {{repository: {IMAGE_REPO}, tag: "{IMAGE_TAG}"}}}}
run: {{path: sh, args: [-c, 'echo failing on purpose; exit 5']}}
""")
    r = rel.cli("execute", "-c", str(t))
    assert r.returncode == 5, r.stdout + r.stderr
    assert "failing on purpose" in r.stdout
    wait_for(lambda: not leftovers(rel), 180, "the Job, its pod and Secret cleaned up")


def test_an_image_that_cannot_be_pulled_errors_with_the_reason(rel: Release, tmp_path: Path) -> None:
    t = write_task(tmp_path / "task.yml", """
platform: linux
image_resource: {type: registry-image, source: {repository: registry.invalid/nothing/here, tag: v1}}
run: {path: "true"}
""")
    r = rel.cli("execute", "-c", str(t))
    assert r.returncode == 3, r.stdout + r.stderr
    b = json.loads(rel.cli("builds", "--json").stdout)[0]
    assert b["status"] == "errored" and "registry.invalid/nothing/here:v1" in b["reason"]
    wait_for(lambda: not leftovers(rel), 180, "the Job, its pod and Secret cleaned up")
