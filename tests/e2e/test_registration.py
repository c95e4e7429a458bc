"""Worker registration on a real cluster: every worker pod registers running with its platform and tags;
`helm test` passes on the chart's defaults; scaling the StatefulSet up adds workers, scaling it down retires
them (they leave the registry)."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.e2e.conftest import Release, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def rel(release_factory) -> Release:  # noqa: ANN001
    return release_factory("reg")


def test_every_worker_pod_is_running_with_platform_and_tags(rel: Release) -> None:
    ws = rel.wait_running_workers({rel.worker_pod(0), rel.worker_pod(1)})
    for name, w in ws.items():
        assert (w["platform"], w["tags"], w["state"]) == ("linux", ["e2e"], "running")
        assert w["volume_driver"] in ("naive", "overlay", "btrfs") and w["runtime"] == "oci"
        # the volume server's address peers reach: the pod's own IP (the chart's $(POD_IP))
        assert w["baggageclaim_url"] == f"http://{rel.kj('get', 'pod', name)['status']['podIP']}:7788", w
    # the readiness probe (the worker's state file) agrees with web
    rel.k("wait", "--for=condition=Ready", f"pod/{rel.worker_pod(0)}", f"pod/{rel.worker_pod(1)}", "--timeout=60s")


def test_helm_test_on_the_default_values(rel: Release) -> None:
    """The chart's defaults (plain HTTP; tests/e2e/test_operations.py runs the same over HTTPS)."""
    assert httpx.get(rel.web_url + "/healthz", timeout=30).status_code == 200  # plain HTTP by default
    result = rel.helm.test(rel.name, timeout=300, logs=True)
    assert "helm test: a task ran and its output came back" in json.dumps(result)


def test_scaling_up_adds_workers_and_down_retires_them(rel: Release) -> None:
    sts = f"{rel.fullname}-worker"
    rel.k("scale", "statefulset", sts, "--replicas=3")
    rel.wait_running_workers({rel.worker_pod(i) for i in range(3)})
    rel.k("scale", "statefulset", sts, "--replicas=1")
    # the removed pods get SIGUSR2 from preStop: they retire and leave the registry (not stalled)
    ws = rel.wait_running_workers({rel.worker_pod(0)})
    assert set(ws) == {rel.worker_pod(0)}, ws
    wait_for(lambda: "worker-2" not in rel.k("get", "pods"), 180, "scaled-down pods gone")
    web_logs = rel.logs(f"deploy/{rel.fullname}-web")
    for gone in (rel.worker_pod(1), rel.worker_pod(2)):
        assert f'"worker": "{gone}", "old": "running", "new": "retiring"' in web_logs
        assert f'"worker": "{gone}", "why": "retired"' in web_logs
