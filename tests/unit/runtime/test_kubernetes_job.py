"""The kubernetes runtime's pure parts: Job manifests (golden files, validated against the Kubernetes
OpenAPI schema) and the watchdog's classification of Job/pod/event states.

Golden files live in tests/unit/runtime/golden/ and are reviewed by hand; rewrite them with
AIRSIDE_UPDATE_GOLDEN=1 and read the diff.
"""

from __future__ import annotations

import os
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from airside.config import Settings
from airside.runtime.base import ContainerSpec, Limits, Mount, RuntimeError_
from airside.runtime.kubernetes import (
    FETCH,
    TASK,
    UPLOAD,
    InfraFailure,
    KubeCache,
    KubeTaskSpec,
    KubeVolume,
    build_job,
    build_secret,
    classify,
    job_name,
)
from airside.runtime.kubernetes.names import secret_name
from airside.task.config import load_task_config

GOLDEN = Path(__file__).parent / "golden"
KUBE_VERSION = "1.34.0"


def _settings(**kw: Any) -> Settings:
    base = dict(kubernetes_namespace="ci", kubernetes_airside_image="airside:0.1.0",
                kubernetes_artifact_url="http://airside-baggageclaim.airside:7788", kubernetes_task_timeout=1800,
                kubernetes_ttl_after_finished=600)
    return Settings(**{**base, **kw})


FULL_TASK = """\
platform: linux
image_resource:
  type: registry-image
  source: {repository: golang, tag: "1.22"}
inputs:
- name: src
- name: ci
  path: tasks/ci
outputs:
- name: bin
caches:
- path: src/.cache/go-build
params:
  GOFLAGS: -mod=vendor
  VERBOSE: true
  RETRIES: 3
run:
  path: ci/build.sh
  args: [-o, ../bin/app]
  dir: src
  user: "1000:1000"
container_limits:
  cpu: 512
  memory: 1GB
"""


def _full_spec() -> KubeTaskSpec:
    config = load_task_config(FULL_TASK, "build.yml")
    return KubeTaskSpec.from_task_config(
        config, handle="b42-a1-build", build="42", attempt=1, step="build",
        inputs={"src": "b42-src", "ci": "b42-ci"}, annotations={"airside.dev/pipeline": "main"},
    )


def _minimal_spec() -> KubeTaskSpec:
    config = load_task_config(
        "platform: linux\nimage_resource: {type: registry-image, source: {repository: busybox}}\n"
        "run: {path: echo, args: [hello]}\n", "hello.yml")
    return KubeTaskSpec.from_task_config(config, handle="b7-a1-hello", build="7", step="hello", inputs={})


CACHED_TASK = """\
platform: linux
image_resource: {type: registry-image, source: {repository: golang, tag: "1.22"}}
caches:
- path: .cache/go-build
- path: /root/go/pkg/mod
- path: tmp
run: {path: go, args: [build, ./...]}
"""


def _cached_spec() -> KubeTaskSpec:
    """Caches only (no inputs, no outputs): one the artifact store holds (fetched before the task and saved
    after it), one it does not hold yet (a miss: saved only), one not kept (no volumes: an emptyDir)."""
    config = load_task_config(CACHED_TASK, "cached.yml")
    return KubeTaskSpec.from_task_config(config, handle="b9-a2", build="9", attempt=2, step="task", inputs={}, caches={
        "/tmp/build/work/.cache/go-build": KubeCache("/tmp/build/work/.cache/go-build", fetch="b9-a2-cache-0",
                                                     upload=f"cache-{'a' * 24}-b9-a2"),
        "/root/go/pkg/mod": KubeCache("/root/go/pkg/mod", upload=f"cache-{'b' * 24}-b9-a2")})


CASES = {
    "job-caches.yaml": (_cached_spec, {}),
    "job-full.yaml": (_full_spec, {}),
    "job-minimal.yaml": (_minimal_spec, {}),
    "job-scheduling.yaml": (_minimal_spec, dict(
        kubernetes_service_account="airside-task",
        kubernetes_node_selector='{"kubernetes.io/arch": "amd64", "airside.dev/pool": "ci"}',
        kubernetes_tolerations='[{"key": "dedicated", "operator": "Equal", "value": "ci", "effect": "NoSchedule"}]',
        kubernetes_image_pull_secrets="registry-creds,mirror-creds",
        kubernetes_task_timeout=0,
    )),
}


def _dump(manifest: dict[str, Any]) -> str:
    return yaml.safe_dump(manifest, sort_keys=False, default_flow_style=False, width=120)


@pytest.mark.parametrize("name", sorted(CASES))
def test_job_matches_golden_file(name: str) -> None:
    make_spec, settings = CASES[name]
    text = _dump(build_job(make_spec(), _settings(**settings)))
    path = GOLDEN / name
    if os.environ.get("AIRSIDE_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} missing: run with AIRSIDE_UPDATE_GOLDEN=1 and review it"
    assert text == path.read_text(), f"{name} differs from the golden file (AIRSIDE_UPDATE_GOLDEN=1 rewrites it)"


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_job_is_valid_kubernetes(name: str) -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    doc = yaml.safe_load((GOLDEN / name).read_text())
    kv.validate(doc, KUBE_VERSION, strict=True)


def test_secret_is_valid_kubernetes() -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    secret = build_secret(_full_spec(), _settings(), "s3cr3t")
    kv.validate(secret, KUBE_VERSION, strict=True)
    assert secret["metadata"]["name"] == "b42-a1-build-artifacts"


def test_pod_shape_follows_inputs_and_outputs() -> None:
    full = build_job(_full_spec(), _settings())["spec"]["template"]["spec"]
    assert [c["name"] for c in full["initContainers"]] == [FETCH, TASK]
    assert [c["name"] for c in full["containers"]] == [UPLOAD]
    task = full["initContainers"][1]
    assert task["resources"] == {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "1Gi"}}
    assert task["securityContext"] == {"runAsUser": 1000, "runAsGroup": 1000}
    assert task["workingDir"] == "/tmp/build/work/src"
    assert {m["mountPath"] for m in task["volumeMounts"]} == {
        "/tmp/build/work/src", "/tmp/build/work/tasks/ci", "/tmp/build/work/bin", "/tmp/build/work/src/.cache/go-build"}
    minimal = build_job(_minimal_spec(), _settings())["spec"]["template"]["spec"]
    assert "initContainers" not in minimal and [c["name"] for c in minimal["containers"]] == [TASK]


def test_kept_caches_are_fetched_before_the_task_and_uploaded_after_it() -> None:
    """Caches persist in Job mode (issue 16 item 6): a cache with a fetch volume is streamed in by
    fetch-inputs, every kept cache is uploaded by upload-outputs, which runs only once the task (an init
    container) succeeded; a cache without volumes stays a plain emptyDir of the task alone."""
    pod = build_job(_cached_spec(), _settings())["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["initContainers"]] == [FETCH, TASK]
    assert [c["name"] for c in pod["containers"]] == [UPLOAD]
    fetch, task = pod["initContainers"]
    upload = pod["containers"][0]
    hit, miss, scratch = "/tmp/build/work/.cache/go-build", "/root/go/pkg/mod", "/tmp/build/work/tmp"
    assert fetch["command"][-2:] == ["--volume", f"b9-a2-cache-0={hit}"] and fetch["command"].count("--volume") == 1
    assert [m["mountPath"] for m in fetch["volumeMounts"]] == [hit]
    assert upload["command"][-4:] == ["--volume", f"cache-{'a' * 24}-b9-a2={hit}",
                                      "--volume", f"cache-{'b' * 24}-b9-a2={miss}"]
    assert [m["mountPath"] for m in upload["volumeMounts"]] == [hit, miss]
    assert [m["mountPath"] for m in task["volumeMounts"]] == [hit, miss, scratch]
    # one volume per cache, shared by the containers that mount it
    by_path = {m["mountPath"]: m["name"] for c in (fetch, task, upload) for m in c["volumeMounts"]}
    assert len(set(by_path.values())) == 3 and all(v.get("emptyDir") == {} for v in pod["volumes"])
    # the same task without cache volumes: no airside step at all (nothing is fetched or kept)
    bare = KubeTaskSpec.from_task_config(load_task_config(CACHED_TASK, "cached.yml"), handle="b9-a3", inputs={})
    assert [c["name"] for c in build_job(bare, _settings(kubernetes_artifact_url=""))["spec"]["template"]["spec"]
            ["containers"]] == [TASK]
    with pytest.raises(RuntimeError_, match="kubernetes_artifact_url"):  # kept caches need the store's URL
        build_job(_cached_spec(), _settings(kubernetes_artifact_url=""))


def test_output_at_an_input_path_shares_its_volume() -> None:
    spec = KubeTaskSpec(handle="h", image="busybox:1", path="true",
                        inputs=[KubeVolume("repo", "/w/repo", "vol-repo")],
                        outputs=[KubeVolume("repo-out", "/w/repo", "h-out")])
    pod = build_job(spec, _settings())["spec"]["template"]["spec"]
    assert pod["volumes"] == [{"name": "input-0", "emptyDir": {}}]
    assert pod["containers"][0]["volumeMounts"] == [{"name": "input-0", "mountPath": "/w/repo"}]


def test_specs_kubernetes_cannot_run_are_refused_with_a_reason() -> None:
    with pytest.raises(RuntimeError_, match="numeric uid"):
        build_job(KubeTaskSpec(handle="h", image="busybox", path="id", user="nobody"), _settings())
    with pytest.raises(RuntimeError_, match="kubernetes_artifact_url"):
        build_job(_full_spec(), _settings(kubernetes_artifact_url=""))
    config = load_task_config("platform: linux\nrun: {path: x}\n")
    with pytest.raises(RuntimeError_, match="image_resource"):
        KubeTaskSpec.from_task_config(config, handle="h", inputs={})
    with pytest.raises(RuntimeError_, match="allow_privileged_tasks"):
        build_job(KubeTaskSpec.from_container_spec(ContainerSpec(handle="h", rootfs=None, path="x", image="busybox",
                                                                 privileged=True)), _settings())


def test_run_path_omitted_runs_the_image_entrypoint_as_a_job() -> None:
    # Concourse 8: without run.path the image's ENTRYPOINT/CMD runs; a Job's container without `command`
    config = load_task_config("platform: linux\nimage_resource: {type: registry-image, source: {repository: nginx}}\n")
    spec = KubeTaskSpec.from_task_config(config, handle="h", inputs={})
    task = build_job(spec, _settings())["spec"]["template"]["spec"]["containers"][0]
    assert "command" not in task and "args" not in task and task["image"] == "nginx:latest"
    # run.args would have to follow the image's CMD, which the kubelet cannot do: refused, saying so
    with_args = load_task_config("platform: linux\nimage_resource: {type: registry-image, source: {repository: x}}\n"
                                 "run: {args: [-v]}\n")
    with pytest.raises(RuntimeError_, match="run.args without run.path .* set run.path"):
        KubeTaskSpec.from_task_config(with_args, handle="h", inputs={})


def test_other_image_resource_types_are_refused_when_the_job_is_built() -> None:
    config = load_task_config("platform: linux\nimage_resource: {type: mock, source: {mirror_self: true}}\n"
                              "run: {path: echo}\n")
    with pytest.raises(RuntimeError_, match="image unavailable: image_resource type 'mock' is not supported yet"):
        KubeTaskSpec.from_task_config(config, handle="h", inputs={})


def test_absolute_and_work_dir_paths_are_mounted_where_they_say() -> None:
    config = load_task_config(
        "platform: linux\nimage_resource: {type: registry-image, source: {repository: x}}\n"
        "inputs:\n- {name: context, path: .}\n- {name: pkg, path: /var/vcap/packages/pkg-config}\n"
        "outputs:\n- {name: target, path: /var/vcap/packages/tar}\ncaches:\n- path: /root/.m2\nrun: {path: sh}\n")
    spec = KubeTaskSpec.from_task_config(config, handle="h", inputs={"context": "v-ctx", "pkg": "v-pkg"})
    pod = build_job(spec, _settings())["spec"]["template"]["spec"]
    task = next(c for c in pod["initContainers"] if c["name"] == TASK)
    assert {m["mountPath"] for m in task["volumeMounts"]} == {
        "/tmp/build/work", "/var/vcap/packages/pkg-config", "/var/vcap/packages/tar", "/root/.m2"}


def test_container_spec_mounts_are_artifact_volumes() -> None:
    spec = KubeTaskSpec.from_container_spec(ContainerSpec(
        handle="h", rootfs=None, path="/bin/sh", args=["-c", "true"], image="busybox:1.36", dir="/w",
        mounts=[Mount(Path("/vols/live/in-1"), "/w/in", read_only=True), Mount(Path("out-1"), "/w/out")],
        limits=Limits(cpu_shares=1024, memory_bytes=64 << 20)))
    assert spec.inputs == [KubeVolume("in-1", "/w/in", "in-1")]
    assert spec.outputs == [KubeVolume("out-1", "/w/out", "out-1")]
    assert build_job(spec, _settings())["spec"]["template"]["spec"]["initContainers"][1]["resources"] == {
        "requests": {"cpu": "1000m", "memory": "64Mi"}, "limits": {"memory": "64Mi"}}


def test_job_names_are_dns_labels() -> None:
    assert job_name("b42-a1-build") == "b42-a1-build"
    for handle in ("Build_42/Step One", "x" * 80, "-", "build.42"):
        name = job_name(handle)
        assert len(name) <= 52 and name[0].isalnum() and name[-1].isalnum(), name
        assert all(c.islower() or c.isdigit() or c == "-" for c in name), name
    assert job_name("Build_42") != job_name("build-42")


# --------------------------------------------------------------------------- the watchdog

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)


def _t(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).isoformat().replace("+00:00", "Z")


def _job(age: float = 10, conditions: list[dict[str, Any]] | None = None, **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "j", "creationTimestamp": _t(age)}, "spec": {"activeDeadlineSeconds": 60},
            "status": {"conditions": conditions or [], **status}}


def _pod(*, init: list[tuple[str, dict]] | None = None, main: list[tuple[str, dict]] | None = None,
         scheduled: dict[str, Any] | None = None, phase: str = "Running", deleting: bool = False,
         **status: Any) -> dict[str, Any]:
    init, main = init or [], main or [(TASK, {"running": {}})]
    cond = scheduled if scheduled is not None else {"type": "PodScheduled", "status": "True",
                                                   "lastTransitionTime": _t(9)}
    meta: dict[str, Any] = {"name": "j-abcde", "creationTimestamp": _t(9)}
    if deleting:
        meta["deletionTimestamp"] = _t(1)
    return {
        "metadata": meta,
        "spec": {"nodeName": "node-1",
                 "initContainers": [{"name": n, "image": f"img-{n}"} for n, _ in init],
                 "containers": [{"name": n, "image": f"img-{n}"} for n, _ in main]},
        "status": {"phase": phase, "conditions": [cond] + status.pop("conditions", []),
                   "initContainerStatuses": [{"name": n, "state": s} for n, s in init],
                   "containerStatuses": [{"name": n, "state": s} for n, s in main], **status},
    }


def _ev(obj: str, reason: str, message: str, type_: str = "Warning") -> dict[str, Any]:
    return {"involvedObject": {"name": obj}, "reason": reason, "message": message, "type": type_,
            "lastTimestamp": _t(1)}


def _classify(job: Any, pods: list, events: list | None = None, timeout: float = 120) -> Any:
    return classify(job, pods, events or [], now=NOW, schedule_timeout=timeout)


def test_task_exit_codes_are_results_not_errors() -> None:
    ok = _pod(main=[(TASK, {"terminated": {"exitCode": 0, "reason": "Completed"}})], phase="Succeeded")
    assert (_classify(_job(), [ok]).state, _classify(_job(), [ok]).code) == ("exited", 0)
    failed = _pod(init=[(FETCH, {"terminated": {"exitCode": 0}}), (TASK, {"terminated": {"exitCode": 3, "reason": "Error"}})],
                  main=[(UPLOAD, {"waiting": {"reason": "PodInitializing"}})], phase="Failed")
    v = _classify(_job(), [failed])
    assert (v.state, v.code, v.reason) == ("exited", 3, "")
    oom = _pod(main=[(TASK, {"terminated": {"exitCode": 137, "reason": "OOMKilled"}})], phase="Failed")
    assert _classify(_job(), [oom]).reason == "OOMKilled"


def test_success_waits_for_the_upload_and_reports_its_failure() -> None:
    init = [(TASK, {"terminated": {"exitCode": 0}})]
    assert _classify(_job(), [_pod(init=init, main=[(UPLOAD, {"running": {}})])]).state == "running"
    done = _pod(init=init, main=[(UPLOAD, {"terminated": {"exitCode": 0}})], phase="Succeeded")
    assert (_classify(_job(), [done]).state, _classify(_job(), [done]).code) == ("exited", 0)
    bad = _pod(init=init, main=[(UPLOAD, {"terminated": {"exitCode": 1, "message": "error: volume exists"}})])
    v = _classify(_job(), [bad])
    assert (v.state, v.kind, v.requeue) == ("infra", "UploadOutputs", False) and "volume exists" in v.reason


def test_fetch_failure_names_the_step() -> None:
    pod = _pod(init=[(FETCH, {"terminated": {"exitCode": 1, "message": "cannot reach the volume server"}}),
                     (TASK, {"waiting": {"reason": "PodInitializing"}})], phase="Failed")
    v = _classify(_job(), [pod])
    assert v.kind == "FetchInputs" and "cannot reach the volume server" in v.reason


@pytest.mark.parametrize("why", ["ErrImagePull", "ImagePullBackOff", "InvalidImageName"])
def test_image_pull_problems_fail_fast_with_the_image(why: str) -> None:
    pod = _pod(main=[(TASK, {"waiting": {"reason": why, "message": "manifest unknown"}})], phase="Pending")
    v = _classify(_job(age=2), [pod])
    assert v.kind == "ImagePull" and "img-task" in v.reason and "manifest unknown" in v.reason and not v.requeue


def test_unschedulable_carries_the_scheduler_message() -> None:
    msg = "0/3 nodes are available: 3 Insufficient memory."
    pod = _pod(main=[(TASK, {"waiting": {"reason": "ContainerCreating"}})], phase="Pending",
               scheduled={"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": msg})
    v = _classify(_job(), [pod])
    assert v.kind == "Unschedulable" and msg in v.reason
    # the condition may not carry the message yet: the FailedScheduling event does
    pod["status"]["conditions"][0].pop("message")
    assert msg in _classify(_job(), [pod], [_ev("j-abcde", "FailedScheduling", msg)]).reason
    # a cluster autoscaler adding a node: wait, up to the schedule timeout
    scale = [_ev("j-abcde", "TriggeredScaleUp", "pod triggered scale-up", "Normal")]
    assert _classify(_job(age=30), [pod], scale).state == "pending"
    assert _classify(_job(age=300), [pod], scale).kind == "Unschedulable"


def test_unbound_pvc_is_named() -> None:
    pod = _pod(main=[(TASK, {"waiting": {"reason": "ContainerCreating"}})], phase="Pending",
               scheduled={"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                          "message": "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims."})
    pod["spec"]["volumes"] = [{"name": "c", "persistentVolumeClaim": {"claimName": "cache-pvc"}}]
    v = _classify(_job(), [pod], [_ev("cache-pvc", "ProvisioningFailed", "storageclass \"fast\" not found")])
    assert v.kind == "PVCNotBound" and "cache-pvc" in v.reason and "storageclass" in v.reason


def test_schedule_timeout_is_separate_from_the_run_timeout() -> None:
    pending = _pod(main=[(TASK, {"waiting": {"reason": "ContainerCreating"}})], phase="Pending",
                   scheduled={"type": "PodScheduled", "status": "False", "reason": "SchedulerError", "message": "busy"})
    assert _classify(_job(age=30), [pending]).state == "pending"
    v = _classify(_job(age=200), [pending])
    assert v.kind == "ScheduleTimeout" and "120s" in v.reason
    assert _classify(_job(age=200), []).kind == "ScheduleTimeout"  # no pod at all
    # scheduled, but the sandbox never comes up
    stuck = _pod(main=[(TASK, {"waiting": {"reason": "ContainerCreating"}})], phase="Pending",
                 scheduled={"type": "PodScheduled", "status": "True", "lastTransitionTime": _t(200)})
    ev = [_ev("j-abcde", "FailedCreatePodSandBox", "failed to setup network")]
    assert _classify(_job(age=200), [stuck], ev).kind == "PodStuck"
    assert _classify(_job(age=200), [stuck], []).state == "pending"  # slow image pull: no failure event


def test_evictions_and_disruptions_are_requeued() -> None:
    evicted = _pod(phase="Failed", reason="Evicted", message="The node was low on resource: ephemeral-storage.",
                   main=[(TASK, {"terminated": {"exitCode": 137}})])
    v = _classify(_job(), [evicted])
    assert (v.kind, v.requeue) == ("Evicted", True) and "ephemeral-storage" in v.reason
    disrupted = _pod(conditions=[{"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler",
                                  "message": "preempted by a higher-priority pod"}])
    v = _classify(_job(), [disrupted])
    assert (v.kind, v.requeue) == ("Disrupted", True) and "PreemptionByScheduler" in v.reason


def test_deadline_and_deletions_are_errors_with_the_kubernetes_reason() -> None:
    deadline = [{"type": "FailureTarget", "status": "True", "reason": "DeadlineExceeded"}]
    v = _classify(_job(conditions=deadline), [_pod(main=[(TASK, {"terminated": {"exitCode": 137}})])])
    assert v.kind == "DeadlineExceeded" and "60s" in v.reason and not v.requeue
    assert _classify(_job(), [_pod(deleting=True)]).kind == "PodDeleted"
    assert _classify(_job(startTime=_t(30)), [_pod(deleting=True)]).kind == "PodDeleted"  # 30s of a 60s deadline
    # past its deadline, the Job controller deletes the pod before the Job shows the condition
    v = _classify(_job(startTime=_t(61)), [_pod(deleting=True)])
    assert v.kind == "DeadlineExceeded" and "60s" in v.reason
    gone = [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]
    assert _classify(_job(conditions=gone, failed=1), []).kind == "PodDeleted"
    assert _classify(None, []).kind == "JobDeleted"
    forbidden = [_ev("j", "FailedCreate", 'pods "j-x" is forbidden: violates PodSecurity "restricted:latest"')]
    assert "PodSecurity" in _classify(_job(), [], forbidden).reason


def test_start_errors_and_config_errors() -> None:
    start = _pod(main=[(TASK, {"terminated": {"exitCode": 128, "reason": "StartError",
                                              "message": 'exec: "ci/build.sh": stat ci/build.sh: no such file'}})])
    v = _classify(_job(), [start])
    assert v.kind == "StartError" and "ci/build.sh" in v.reason
    cfg = _pod(main=[(TASK, {"waiting": {"reason": "CreateContainerConfigError",
                                         "message": "container has runAsNonRoot and image will run as root"}})])
    assert _classify(_job(), [cfg]).kind == "CreateContainer"


def test_running_and_pending_are_not_verdicts() -> None:
    assert _classify(_job(), [_pod()]).state == "running"
    assert _classify(_job(age=1), []).state == "pending"
    assert not _classify(_job(), [_pod()]).done


class _Namespace:
    """The `Cluster` calls signal() and wait() make, over one Job in memory: deleting its running pod fails
    the Job (backoffLimit 0), as the Job controller does; a pod whose task has exited stays as it is."""

    def __init__(self, pod: dict[str, Any]) -> None:
        self.job: dict[str, Any] | None = _job()
        self.pods = [pod]
        self.deleted: list[tuple[str, int | None]] = []

    def read_job(self, name: str) -> dict[str, Any] | None:
        return self.job

    def job_pods(self, job: str) -> tuple[list[dict[str, Any]], str]:
        return list(self.pods), "1"

    def events(self, names: set[str]) -> list[dict[str, Any]]:
        return []

    def delete_pod(self, name: str, grace_seconds: int | None) -> None:
        self.deleted.append((name, grace_seconds))
        if "terminated" in self.pods[0]["status"]["containerStatuses"][0]["state"]:
            return
        self.pods = []
        self.job = _job(conditions=[{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}], failed=1)

    def stop(self, job: str, secret: str | None, grace_seconds: int | None = None) -> None:
        self.job, self.pods = None, []


def _runtime(ns: _Namespace) -> Any:
    from airside.runtime.kubernetes import KubernetesRuntime

    rt = KubernetesRuntime(settings=_settings(), api_client=object())  # type: ignore[arg-type]  # never called
    rt.cluster = ns  # type: ignore[assignment]
    return rt


@pytest.mark.parametrize(("sig", "code", "grace"), [(signal.SIGTERM, 143, None), (signal.SIGKILL, 137, 1)])
def test_a_stopped_task_ends_with_128_plus_the_signal(sig: signal.Signals, code: int, grace: int | None) -> None:
    """Like the other runtimes: a task stopped by signal() whose pod then goes away exits 128+N, named."""
    ns = _Namespace(_pod())
    rt = _runtime(ns)
    rt.signal("t", sig)
    assert ns.deleted == [("j-abcde", grace)]
    status = rt.wait("t", timeout=0)
    assert status is not None and (status.code, status.reason) == (code, f"killed by {sig.name}")


def test_only_a_stop_turns_a_vanished_pod_into_an_exit_code() -> None:
    ns = _Namespace(_pod())
    ns.delete_pod("j-abcde", None)  # by someone else: an infrastructure failure, not a stop
    with pytest.raises(InfraFailure) as e:
        _runtime(ns).wait("t", timeout=0)
    assert e.value.kind == "PodDeleted"
    rt = _runtime(_Namespace(_pod(main=[(TASK, {"terminated": {"exitCode": 0, "reason": "Completed"}})],
                                  phase="Succeeded")))
    rt.signal("t", signal.SIGTERM)
    status = rt.wait("t", timeout=0)  # the task had exited by itself: its own code, not 143
    assert status is not None and status.code == 0
    with pytest.raises(RuntimeError_, match="SIGTERM or SIGKILL"):
        rt.signal("t", signal.SIGHUP)


# --------------------------------------------------------------------------- the pod steps (fake store)


class _FakeStore:
    def __init__(self, calls: list, fail: str | None = None) -> None:
        self.calls, self.fail = calls, fail

    def get_dir(self, handle: str, dest: Path) -> None:
        if handle == self.fail:
            raise RuntimeError("volume server said 404: no volume")
        self.calls.append(("get", handle, dest))

    def create(self, handle: str | None = None, *, properties: dict | None = None, ttl: float = 0.0) -> None:
        self.calls.append(("create", handle, properties, ttl))

    def put_dir(self, handle: str, src: Path) -> int:
        self.calls.append(("put", handle, src))
        return 1

    def close(self) -> None:
        self.calls.append(("close",))


def test_pod_steps_use_the_store_with_the_token_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from airside.pod_steps import fetch_inputs_command, upload_outputs_command

    calls: list = []
    seen: list = []

    def factory(url: str, token: str) -> _FakeStore:
        seen.append((url, token))
        return _FakeStore(calls, fail="missing")

    monkeypatch.setenv("AIRSIDE_BAGGAGECLAIM_TOKEN", "t0k")
    r = CliRunner().invoke(fetch_inputs_command(factory), ["--artifact-url", "http://bc:7788", "--volume", "v1=/w/a",
                                                           "--volume", "v2=/w/b"])
    assert r.exit_code == 0, r.output
    assert calls == [("get", "v1", Path("/w/a")), ("get", "v2", Path("/w/b")), ("close",)]
    assert seen == [("http://bc:7788", "t0k")]
    calls.clear()
    r = CliRunner().invoke(upload_outputs_command(factory), ["--artifact-url", "u", "--volume", "o1=/w/out",
                                                             "--property", "build=42", "--ttl", "60"])
    assert r.exit_code == 0, r.output
    assert calls == [("create", "o1", {"build": "42"}, 60.0), ("put", "o1", Path("/w/out")), ("close",)]
    r = CliRunner().invoke(fetch_inputs_command(factory), ["--artifact-url", "u", "--volume", "missing=/w/x"])
    assert r.exit_code == 1 and "missing" in r.output and "404" in r.output
    monkeypatch.delenv("AIRSIDE_BAGGAGECLAIM_TOKEN")
    r = CliRunner().invoke(fetch_inputs_command(factory), ["--artifact-url", "u", "--volume", "v=/w"])
    assert r.exit_code != 0 and "AIRSIDE_BAGGAGECLAIM_TOKEN" in r.output


def test_stdin_comes_from_the_jobs_secret_never_the_pod_spec() -> None:
    """A resource script reads its request on stdin; in a Job the image's sh pipes it from the Secret (a source's
    private key must not be readable by whoever can read pods)."""
    request = '{"source": {"private_key": "-----BEGIN KEY-----"}, "version": null}'
    spec = KubeTaskSpec(handle="b5-a1", image="me/git-resource", path="/opt/resource/check", build="5", step="check",
                        stdin=request)
    job = build_job(spec, _settings())
    task = job["spec"]["template"]["spec"]["containers"][0]
    assert task["command"][:2] == ["/bin/sh", "-c"] and task["command"][3] == "/opt/resource/check"
    assert {"name": "AIRSIDE_STDIN", "valueFrom": {"secretKeyRef": {"name": secret_name("b5-a1"), "key": "stdin"}}} \
        in task["env"]
    assert "BEGIN KEY" not in yaml.safe_dump(job) and "BEGIN KEY" not in repr(spec)
    assert build_secret(spec, _settings(), "")["stringData"]["stdin"] == request
    plain = build_job(KubeTaskSpec(handle="b6-a1", image="busybox", path="/bin/true", build="6"), _settings())
    assert "AIRSIDE_STDIN" not in yaml.safe_dump(plain)
