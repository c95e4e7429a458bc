"""The Kubernetes runtime's operator knobs (issue 16 items 3, 4, 5, 7, 8) over the pure spec and manifest
builders: registry credentials as a per-Job image pull Secret, placement by build tag, requests and limits
from container_limits (and the defaults), privileged tasks behind allow_privileged_tasks, and rootfs_uri
refused with what to use instead. The Secret's life in a cluster is tests/integration/runtime/test_kubernetes.py's."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from airside.config import Settings
from airside.runtime.base import RuntimeError_
from airside.runtime.images import registry_host
from airside.runtime.kubernetes import KubeTaskSpec, build_job, build_pull_secret, pull_secret_name
from airside.task.config import load_task_config

KUBE_VERSION = "1.34.0"


def _settings(**kw: Any) -> Settings:
    return Settings(**{"kubernetes_namespace": "ci", "kubernetes_task_timeout": 0, **kw})


def _spec(task: str = "", *, tags: tuple[str, ...] = (), privileged: bool = False, **source: str) -> KubeTaskSpec:
    src = {"repository": "registry.example.com:5000/team/app", "tag": "1", **source}
    text = task or (f"platform: linux\nimage_resource: {{type: registry-image, source: {json.dumps(src)}}}\n"
                    "run: {path: 'true'}\n")
    return KubeTaskSpec.from_task_config(load_task_config(text, "t.yml"), handle="b9-a1", build="9", step="task",
                                         inputs={}, tags=tags, privileged=privileged)


def _pod(spec: KubeTaskSpec, **settings: Any) -> dict[str, Any]:
    pod: dict[str, Any] = build_job(spec, _settings(**settings))["spec"]["template"]["spec"]
    return pod


def _task(pod: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in [*pod.get("initContainers", []), *pod["containers"]] if c["name"] == "task")


# --------------------------------------------------------------------------- item 3: registry credentials


def test_registry_credentials_become_the_jobs_own_pull_secret() -> None:
    spec = _spec(username="robot", password="hunter2-secret")
    assert "hunter2-secret" not in repr(spec)  # a spec is logged; its password never is
    secret = build_pull_secret(spec, _settings())
    assert secret is not None and secret["type"] == "kubernetes.io/dockerconfigjson"
    assert secret["metadata"]["name"] == pull_secret_name("b9-a1") == "b9-a1-pull"
    auths = json.loads(secret["stringData"][".dockerconfigjson"])["auths"]
    assert list(auths) == ["registry.example.com:5000"]
    assert auths["registry.example.com:5000"]["username"] == "robot"
    assert auths["registry.example.com:5000"]["password"] == "hunter2-secret"
    pod = _pod(spec, kubernetes_image_pull_secrets="mirror-creds")
    assert pod["imagePullSecrets"] == [{"name": "mirror-creds"}, {"name": "b9-a1-pull"}]
    assert "hunter2-secret" not in json.dumps(pod)  # the Job refers to the Secret, never holds the password
    kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    kv.validate(secret, KUBE_VERSION, strict=True)


def test_no_credentials_no_pull_secret() -> None:
    spec = _spec()
    assert spec.pull_credentials is None and build_pull_secret(spec, _settings()) is None
    assert "imagePullSecrets" not in _pod(spec)


def test_half_given_credentials_are_refused() -> None:
    with pytest.raises(RuntimeError_, match="both username and password"):
        _spec(username="robot")


@pytest.mark.parametrize(("reference", "host"), [
    ("busybox:1.36", "docker.io"), ("library/busybox", "docker.io"), ("ghcr.io/o/r:1", "ghcr.io"),
    ("127.0.0.1:5000/busybox", "127.0.0.1:5000"), ("localhost/x", "localhost"), ("team/app@sha256:ab", "docker.io"),
])
def test_registry_host_follows_dockers_rule(reference: str, host: str) -> None:
    assert registry_host(reference) == host


# --------------------------------------------------------------------------- item 4: placement


PLACEMENT = json.dumps({
    "gpu": {"nodeSelector": {"airside.dev/gpu": "true"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]},
    "ssd": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}]}}}},
    "zone-b": {"nodeSelector": {"topology.kubernetes.io/zone": "b"},
               "affinity": {"podAntiAffinity": {}}},
})


def test_build_tags_place_the_pod_by_the_settings_map() -> None:
    pod = _pod(_spec(tags=("gpu", "ssd")), kubernetes_tag_placement=PLACEMENT,
               kubernetes_node_selector="kubernetes.io/arch=amd64",
               kubernetes_tolerations='[{"key": "ci", "operator": "Exists"}]',
               kubernetes_priority_class_name="ci-low", kubernetes_runtime_class_name="gvisor")
    assert pod["nodeSelector"] == {"kubernetes.io/arch": "amd64", "airside.dev/gpu": "true"}
    assert pod["tolerations"] == [{"key": "ci", "operator": "Exists"},
                                  {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0][
        "matchExpressions"][0]["values"] == ["ssd"]
    assert pod["priorityClassName"] == "ci-low" and pod["runtimeClassName"] == "gvisor"
    kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    kv.validate(build_job(_spec(tags=("gpu", "ssd")), _settings(kubernetes_tag_placement=PLACEMENT)),
                KUBE_VERSION, strict=True)


def test_an_untagged_build_gets_only_the_defaults() -> None:
    pod = _pod(_spec(), kubernetes_tag_placement=PLACEMENT)
    assert "nodeSelector" not in pod and "tolerations" not in pod and "affinity" not in pod
    assert "priorityClassName" not in pod and "runtimeClassName" not in pod


@pytest.mark.parametrize(("tags", "settings", "message"), [
    (("arm",), {}, "build tag 'arm' has no placement on Kubernetes: add it to kubernetes_tag_placement"),
    (("zone-b",), {"kubernetes_node_selector": "topology.kubernetes.io/zone=a"}, "cannot have both"),
    (("ssd", "zone-b"), {}, "both set an affinity"),
])
def test_placement_that_cannot_hold_is_refused(tags: tuple[str, ...], settings: dict[str, str], message: str) -> None:
    with pytest.raises(RuntimeError_, match=message):
        _pod(_spec(tags=tags), kubernetes_tag_placement=PLACEMENT, **settings)


def test_placement_setting_shape_is_checked() -> None:
    with pytest.raises(ValidationError, match="unknown key 'nodeSelectors'"):
        Settings(kubernetes_tag_placement='{"gpu": {"nodeSelectors": {}}}')
    with pytest.raises(ValidationError, match="tolerations must be a JSON list"):
        Settings(kubernetes_tag_placement='{"gpu": {"tolerations": {}}}')


# --------------------------------------------------------------------------- item 5: resources


LIMITED = """platform: linux
image_resource: {type: registry-image, source: {repository: busybox}}
run: {path: 'true'}
container_limits: {cpu: 2048, memory: 256MB}
"""


def test_container_limits_map_to_requests_and_limits() -> None:
    assert _task(_pod(_spec(LIMITED)))["resources"] == {
        "requests": {"cpu": "2000m", "memory": "256Mi"}, "limits": {"memory": "256Mi"}}
    assert _task(_pod(_spec(LIMITED), kubernetes_cpu_limit_ratio=1.5))["resources"]["limits"] == {
        "cpu": "3000m", "memory": "256Mi"}


def test_defaults_apply_to_tasks_without_limits_and_never_override_them() -> None:
    defaults = {"kubernetes_default_cpu_shares": 256, "kubernetes_default_memory_mib": 512}
    assert _task(_pod(_spec(), **defaults))["resources"] == {
        "requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "512Mi"}}
    assert _task(_pod(_spec(LIMITED), **defaults))["resources"]["requests"] == {"cpu": "2000m", "memory": "256Mi"}
    assert "resources" not in _task(_pod(_spec()))


# --------------------------------------------------------------------------- item 7: privileged


def test_privileged_tasks_need_the_operators_setting() -> None:
    spec = _spec(privileged=True)
    with pytest.raises(RuntimeError_, match=r"allow_privileged_tasks \(AIRSIDE_ALLOW_PRIVILEGED_TASKS=true"):
        build_job(spec, _settings())
    assert _task(_pod(spec, allow_privileged_tasks=True))["securityContext"] == {"privileged": True}
    assert "securityContext" not in _task(_pod(_spec(), allow_privileged_tasks=True))


def test_privileged_keeps_the_tasks_user() -> None:
    task = ("platform: linux\nimage_resource: {type: registry-image, source: {repository: busybox}}\n"
            "run: {path: id, user: '1000:10'}\n")
    assert _task(_pod(_spec(task, privileged=True), allow_privileged_tasks=True))["securityContext"] == {
        "runAsUser": 1000, "runAsGroup": 10, "privileged": True}


# --------------------------------------------------------------------------- item 8: rootfs_uri


def test_rootfs_uri_is_refused_naming_image_resource() -> None:
    with pytest.raises(RuntimeError_, match=r"rootfs_uri is not supported by the kubernetes runtime.*use "
                                            r"image_resource \(type: registry-image"):
        _spec("platform: linux\nrootfs_uri: docker:///busybox\nrun: {path: 'true'}\n")
