"""The Kubernetes Job runtime end to end: a release with no workers; `airside execute` of a task with two
inputs and an output creates a Job whose init container fetches the inputs from the artifact store (in the
airside image, while the task runs in an image of its own), the log streams back to the CLI while the task
runs, the exit code propagates, the output downloads, and the Job is cleaned up."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import IMAGE_REPO, IMAGE_TAG, Release, gate_sh, wait_for, write_task
from tests.kubecluster import Kube, node_shell_image

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


@pytest.fixture(scope="module")
def task_image(kube: Kube) -> str:
    """An image the nodes hold that is not the airside image (the task's own image must not be the one the
    airside steps run in, or an assertion on where those run proves nothing)."""
    image = node_shell_image(kube)
    assert not image.split("/")[-1].startswith(f"{IMAGE_REPO}:"), image
    return image


def image_resource(image: str) -> str:
    repository, _, tag = image.rpartition(":")
    return f'{{type: registry-image, source: {{repository: "{repository}", tag: "{tag}"}}}}'


def test_a_task_with_two_inputs_and_an_output_runs_as_a_job(rel: Release, tmp_path: Path, task_image: str) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "one.txt").write_text("first input\n")
    (tmp_path / "b" / "nested").mkdir(parents=True)
    (tmp_path / "b" / "nested" / "two.txt").write_text("second input\n")
    gate = "/tmp/airside-e2e-gate"
    # the task prints a line, then waits at a gate the test opens only once it has seen that line from the CLI
    t = write_task(tmp_path / "task.yml", f"""
platform: linux
image_resource: {image_resource(task_image)}
inputs: [{{name: a}}, {{name: b}}]
outputs: [{{name: result}}]
params: {{WHO: kubernetes}}
run:
  path: sh
  args: [-c, 'echo "hello from $WHO"; {gate_sh(gate)}; cat a/one.txt b/nested/two.txt > result/joined.txt; echo done']
""")
    log = tmp_path / "ex.log"
    ex = rel.cli_background("execute", "-c", str(t), "-i", f"a={tmp_path / 'a'}", "-i", f"b={tmp_path / 'b'}",
                            "-o", f"result={tmp_path / 'out'}", log=log)
    try:
        job = wait_for(lambda: jobs(rel) and jobs(rel)[0], 180, "the task's Job")
        spec = job["spec"]["template"]["spec"]
        assert job["spec"]["backoffLimit"] == 0 and spec["restartPolicy"] == "Never"
        images = [(c["name"], c["image"]) for c in spec["initContainers"] + spec["containers"]]
        airside = f"{IMAGE_REPO}:{IMAGE_TAG}"
        assert images == [("fetch-inputs", airside), ("task", task_image), ("upload-outputs", airside)], images
        # streamed: the line reaches the CLI while the task still waits at the gate (a CLI or web that held the
        # log back until the task ended would never show it here)
        wait_for(lambda: "hello from kubernetes" in log.read_text(), 180, "the task's first line at the CLI")
        assert ex.poll() is None and "done" not in log.read_text(), log.read_text()
        pod = rel.kj("get", "pods", "-l", f"job-name={job['metadata']['name']}")["items"][0]["metadata"]["name"]
        rel.k("exec", pod, "-c", "task", "--", "touch", gate)
        assert ex.wait(600) == 0, log.read_text()[-3000:]
    finally:
        if ex.poll() is None:
            ex.kill()
    assert (tmp_path / "out" / "joined.txt").read_text() == "first input\nsecond input\n"
    assert "done" in log.read_text()
    wait_for(lambda: not leftovers(rel), 180, "the Job, its pod and Secret cleaned up")
    b = rel.builds(1)[0]
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
    b = rel.builds(1)[0]
    assert b["status"] == "errored" and "registry.invalid/nothing/here:v1" in b["reason"]
    wait_for(lambda: not leftovers(rel), 180, "the Job, its pod and Secret cleaned up")
