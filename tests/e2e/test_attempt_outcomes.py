"""One build-attempt lifecycle, two runtimes: the same task matrix — success with an output, a non-zero exit
with an output, an infrastructure failure, an abort — runs on an airside worker (oci runtime in a worker pod)
and as a Kubernetes Job (a build tagged `kubernetes`) in one release, and must end the same way on both:
the same status, exit code, reason shape and output behaviour (a succeeded task's outputs download; a failed
task's outputs are not kept, see airside.runtime.attempt). Catches either runtime spelling an outcome rule of
its own again (e.g. the worker uploading a failed task's outputs while the Job does not)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.e2e.conftest import IMAGE_REPO, IMAGE_TAG, SAMPLE_ROOTFS, Release, wait_for, web_get, write_task

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

RUNTIMES = ("worker", "kubernetes")
# the only difference between the two: where the image comes from (workers here have no registry; the Job's
# image is the airside image the kind nodes already hold) and the tag that sends a build to Kubernetes
IMAGE = {"worker": f"rootfs_uri: {SAMPLE_ROOTFS}",
         "kubernetes": f'image_resource: {{type: registry-image, source: {{repository: {IMAGE_REPO}, '
                       f'tag: "{IMAGE_TAG}"}}}}'}
BAD_IMAGE = {"worker": "rootfs_uri: /nonexistent/rootfs",
             "kubernetes": "image_resource: {type: registry-image, source: {repository: registry.invalid/no/img}}"}
TAG = {"worker": "e2e", "kubernetes": "kubernetes"}


@pytest.fixture(scope="module")
def rel(release_factory) -> Release:  # noqa: ANN001
    # workers are the deployment's runtime; the Job runtime is on too, for builds tagged `kubernetes`
    r = release_factory("both", {"worker": {"replicas": 1}, "kubernetesRuntime": {"enabled": True},
                                 "airside": {"web": {"runtime": "workers"}}})
    r.wait_running_workers({r.worker_pod(0)})
    return r


def task(tmp: Path, runtime: str, script: str, image: str | None = None) -> Path:
    return write_task(tmp / "task.yml", f"""
platform: linux
{image or IMAGE[runtime]}
outputs: [{{name: out}}]
run: {{path: sh, args: [-c, {json.dumps(script)}]}}
""")


def execute(rel: Release, runtime: str, t: Path, out: Path) -> tuple[int, str, dict]:
    r = rel.cli("execute", "-c", str(t), "--tag", TAG[runtime], "-o", f"out={out}")
    text = r.stdout + r.stderr
    m = re.search(r"\(build (\d+)\)", text)
    assert m, text
    return r.returncode, text, build(rel, int(m.group(1)))


def build(rel: Release, build_id: int) -> dict:
    r = web_get(rel, f"/api/v1/builds/{build_id}")
    r.raise_for_status()
    return r.json()


def assert_ran_on(b: dict, runtime: str) -> None:
    if runtime == "kubernetes":
        assert b["worker_name"] is None, b
    else:
        assert b["worker_name"], b


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_success_keeps_the_output(rel: Release, tmp_path: Path, runtime: str) -> None:
    code, text, b = execute(rel, runtime, task(tmp_path, runtime, "echo made > out/f; echo all good"),
                            tmp_path / "out")
    assert code == 0, text
    assert_ran_on(b, runtime)
    assert (b["status"], b["exit_code"]) == ("succeeded", 0)
    assert (tmp_path / "out" / "f").read_text() == "made\n" and "all good" in text
    assert web_get(rel, f"/api/v1/builds/{b['id']}/outputs/out").status_code == 200


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_failed_task_keeps_no_output(rel: Release, tmp_path: Path, runtime: str) -> None:
    code, text, b = execute(rel, runtime, task(tmp_path, runtime, "echo made > out/f; echo failing; exit 3"),
                            tmp_path / "out")
    assert code == 3, text
    assert_ran_on(b, runtime)
    assert (b["status"], b["exit_code"]) == ("failed", 3)
    assert "failing" in text and "outputs not fetched" in text
    assert not (tmp_path / "out").exists()
    assert web_get(rel, f"/api/v1/builds/{b['id']}/outputs/out").status_code == 404


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_an_image_that_cannot_be_had_errors_the_build_naming_it(rel: Release, tmp_path: Path, runtime: str) -> None:
    code, text, b = execute(rel, runtime, task(tmp_path, runtime, "true", BAD_IMAGE[runtime]), tmp_path / "out")
    assert code == 3, text
    assert b["status"] == "errored" and b["exit_code"] is None, b
    assert ("/nonexistent/rootfs" if runtime == "worker" else "registry.invalid/no/img") in b["reason"], b
    assert web_get(rel, f"/api/v1/builds/{b['id']}/outputs/out").status_code == 404


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_abort_ends_the_build_aborted(rel: Release, tmp_path: Path, runtime: str) -> None:
    t = task(tmp_path, runtime, "echo started; sleep 300")
    ex = rel.cli_background("execute", "-c", str(t), "--tag", TAG[runtime], "-o", f"out={tmp_path / 'out'}",
                            log=tmp_path / "ex.log")
    try:
        wait_for(lambda: "started" in (tmp_path / "ex.log").read_text(), 300, "the task running")
        build_id = int(re.findall(r"build (\d+)", (tmp_path / "ex.log").read_text())[0])
        r = rel.cli("abort-build", str(build_id))
        assert r.returncode == 0, r.stdout + r.stderr
        assert ex.wait(180) == 130, (tmp_path / "ex.log").read_text()[-3000:]
    finally:
        if ex.poll() is None:
            ex.kill()
    b = build(rel, build_id)
    assert_ran_on(b, runtime)
    assert (b["status"], b["reason"]) == ("aborted", "aborted"), b
    assert not (tmp_path / "out").exists()


def test_nothing_is_left_behind(rel: Release) -> None:
    """After the matrix: no Job, pod or Secret of a task, and no build volume on the worker."""
    def leftovers() -> list[str]:
        items = []
        for kind in ("jobs", "pods", "secrets"):
            items += [f"{kind}/{o['metadata']['name']}" for o in
                      rel.kj("get", kind, "-l", "app.kubernetes.io/managed-by=airside")["items"]]
        return items

    wait_for(lambda: not leftovers(), 180, "the Jobs, their pods and Secrets cleaned up")
    pod = rel.worker_pod(0)

    def build_volumes() -> list[str]:
        return [v["handle"] for v in rel.volumes(pod) if re.match(r"b\d+-a\d+-", v["handle"])]

    wait_for(lambda: not build_volumes(), 120, "the worker's build volumes destroyed")
