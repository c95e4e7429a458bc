"""The kubernetes runtime against a real cluster (kind from tools/kind, or any KUBECONFIG).

The cluster: $KUBECONFIG, else the offline kind toolchain's kubeconfig ($AIRSIDE_CACHE/kind/kubeconfig,
see tools/kind/cluster-up.sh). Skipped, with the reason, when neither answers (a failure in CI: CI=true).
Each test module run uses a namespace of its own, deleted at the end.

Images: no registry is reachable, so tasks use an image the nodes already hold (read from the nodes'
status.images; $AIRSIDE_TEST_KUBE_IMAGE overrides), which must have /bin/sh. The inputs/outputs test
also needs the airside image on the nodes ($AIRSIDE_TEST_KUBE_AIRSIDE_IMAGE, default airside:0.1.0): on
the tools/kind cluster it is built from this checkout and loaded (tests/kubecluster.py ensure_images,
cached, as the e2e suite does); it runs `airside baggageclaim` in the namespace as the artifact store and
reaches it through `kubectl port-forward`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
import urllib3

from tests.kubecluster import ensure_images, is_tools_kind, unavailable

pytestmark = [pytest.mark.kind, pytest.mark.timeout(600)]

kubernetes = pytest.importorskip("kubernetes", reason="pip install kubernetes")

from airside.baggageclaim.client import VolumeClient  # noqa: E402
from airside.config import Settings  # noqa: E402
from airside.runtime.base import RuntimeError_  # noqa: E402
from airside.runtime.kubernetes import (  # noqa: E402
    InfraFailure,
    KubernetesRuntime,
    KubeTaskSpec,
    KubeVolume,
    PullCredentials,
    job_name,
    load_api_client,
    pull_secret_name,
    secret_name,
)
from tests.procs import wait_for  # noqa: E402

CACHE = Path(os.environ.get("AIRSIDE_CACHE", "/var/cache/airside"))
SHELL_IMAGE_HINTS = ("busybox", "local-path-helper", "debian", "alpine", "kindnetd")


def kubeconfig() -> str | None:
    if os.environ.get("KUBECONFIG"):
        return os.environ["KUBECONFIG"].split(":")[0]
    path = CACHE / "kind" / "kubeconfig"
    return str(path) if path.is_file() else None


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[str, Any]]:
    path = kubeconfig()
    if not path:
        unavailable(f"no cluster: KUBECONFIG is unset and {CACHE / 'kind' / 'kubeconfig'} does not exist "
                    "(make cluster)")
    try:
        api = load_api_client(path)
        kubernetes.client.VersionApi(api).get_code(_request_timeout=10)
    except (RuntimeError_, urllib3.exceptions.HTTPError, kubernetes.client.exceptions.ApiException, OSError) as e:
        unavailable(f"the cluster of {path} does not answer: {e}")
    yield path, api


@pytest.fixture(scope="module")
def namespace(cluster: tuple[str, Any]) -> Iterator[str]:
    _, api = cluster
    core = kubernetes.client.CoreV1Api(api)
    ns = f"airside-it-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": ns}})
    # the default service account appears asynchronously (a pod created before it is refused)
    wait_for(lambda: core.read_namespaced_service_account("default", ns), 60,
             f"the default service account of namespace {ns}", interval=0.5)
    yield ns
    core.delete_namespace(ns, propagation_policy="Background")


def _node_images(api: Any) -> list[str]:
    names = []
    for node in kubernetes.client.CoreV1Api(api).list_node().items:
        for img in node.status.images or []:
            names += [n for n in img.names or [] if "@sha256:" not in n]
    return names


@pytest.fixture(scope="module")
def shell_image(cluster: tuple[str, Any]) -> str:
    if os.environ.get("AIRSIDE_TEST_KUBE_IMAGE"):
        return os.environ["AIRSIDE_TEST_KUBE_IMAGE"]
    names = _node_images(cluster[1])
    for hint in SHELL_IMAGE_HINTS:
        for n in names:
            if hint in n:
                return n
    unavailable(f"no image with a shell on the nodes (have {names}); set AIRSIDE_TEST_KUBE_IMAGE")


@pytest.fixture
def runtime(cluster: tuple[str, Any], namespace: str) -> KubernetesRuntime:
    settings = Settings(kubernetes_namespace=namespace, kubernetes_kubeconfig=cluster[0],
                        kubernetes_schedule_timeout=60, kubernetes_task_timeout=120,
                        kubernetes_airside_image=os.environ.get("AIRSIDE_TEST_KUBE_AIRSIDE_IMAGE", "airside:0.1.0"),
                        kubernetes_artifact_url="http://artifacts:7788")
    return KubernetesRuntime(settings=settings, artifact_token="test-token", api_client=cluster[1], poll_interval=2)


def _spec(image: str, script: str, **kw: Any) -> KubeTaskSpec:
    handle = f"it-{uuid.uuid4().hex[:8]}"
    return KubeTaskSpec(handle=handle, image=image, path="/bin/sh", args=["-c", script], build="it", step="t", **kw)


def _gone(rt: KubernetesRuntime, handle: str, timeout: float = 60) -> None:
    """Job, pods and Secret of a handle all disappear."""
    deadline = time.monotonic() + timeout
    left: list[str] = []
    while time.monotonic() < deadline:
        left = []
        if rt._read_job(job_name(handle)) is not None:
            left.append("job")
        if rt._pods(job_name(handle))[0]:
            left.append("pods")
        for name in (secret_name(handle), pull_secret_name(handle)):
            if rt.cluster.read_secret(name) is not None:
                left.append(f"secret {name}")
        if not left:
            return
        time.sleep(0.5)
    pytest.fail(f"{handle}: {left} still there {timeout}s after destroy")


def _run(rt: KubernetesRuntime, spec: KubeTaskSpec) -> tuple[Any, bytes]:
    rt.prepare(spec)
    rt.start(spec.handle)
    out: list[bytes] = []
    t = threading.Thread(target=lambda: out.extend(c.data for c in rt.logs(spec.handle)), daemon=True)
    t.start()
    try:
        status = rt.wait(spec.handle, timeout=180)
    finally:
        t.join(30)
    return status, b"".join(out)


def test_task_succeeds_with_logs_and_env_and_is_cleaned_up(runtime: KubernetesRuntime, shell_image: str) -> None:
    spec = _spec(shell_image, 'echo "hello $WHO from $(pwd)"; echo err >&2', env={"WHO": "airside"}, dir="/tmp")
    try:
        status, logs = _run(runtime, spec)
        assert status is not None and status.code == 0, status
        assert b"hello airside from /tmp" in logs and b"err" in logs
        assert runtime.status(spec.handle) == "exited"
        assert spec.handle in runtime.list()
    finally:
        runtime.destroy(spec.handle)
    _gone(runtime, spec.handle)
    runtime.destroy(spec.handle)  # idempotent
    assert runtime.status(spec.handle) == "missing"


def test_stdin_reaches_the_task_through_the_jobs_secret(runtime: KubernetesRuntime, shell_image: str) -> None:
    """A resource script's request (its stdin), on a real cluster: what the task reads is exactly what was given."""
    request = '{"source": {"uri": "git@example.com:x.git"}, "version": {"ref": "abc"}}'
    spec = KubeTaskSpec(handle=f"it-{uuid.uuid4().hex[:8]}", image=shell_image, path="/bin/sh",
                        args=["-c", 'cat; echo " <- read" >&2'], build="it", step="t", stdin=request)
    try:
        status, logs = _run(runtime, spec)
        assert status is not None and status.code == 0, status
        assert request.encode() in logs and b"<- read" in logs
    finally:
        runtime.destroy(spec.handle)
    _gone(runtime, spec.handle)


def test_failing_task_returns_its_exit_code(runtime: KubernetesRuntime, shell_image: str) -> None:
    spec = _spec(shell_image, "echo failing; exit 3")
    try:
        status, logs = _run(runtime, spec)
        assert status is not None and status.code == 3 and b"failing" in logs
    finally:
        runtime.destroy(spec.handle)


def test_image_that_cannot_be_pulled_errors_with_the_pull_reason(runtime: KubernetesRuntime) -> None:
    spec = _spec("airside.invalid/no-such-image:1", "true")
    runtime.prepare(spec)
    runtime.start(spec.handle)
    try:
        # the watchdog fails with the pull reason; had it only waited, wait() would return None at the timeout
        with pytest.raises(InfraFailure) as e:
            runtime.wait(spec.handle, timeout=120)
        assert e.value.kind == "ImagePull" and "airside.invalid/no-such-image:1" in e.value.reason
        assert not e.value.requeue
    finally:
        runtime.destroy(spec.handle)
    _gone(runtime, spec.handle)


def test_deadline_kill_is_an_error_with_the_kubernetes_reason(runtime: KubernetesRuntime, shell_image: str) -> None:
    spec = _spec(shell_image, "sleep 120", timeout=3)
    try:
        runtime.prepare(spec)
        runtime.start(spec.handle)
        with pytest.raises(InfraFailure) as e:
            runtime.wait(spec.handle, timeout=120)
        assert e.value.kind == "DeadlineExceeded" and "3s" in e.value.reason
    finally:
        runtime.destroy(spec.handle)
    _gone(runtime, spec.handle)


def test_sigkill_stops_the_task(runtime: KubernetesRuntime, shell_image: str) -> None:
    spec = _spec(shell_image, "echo started; sleep 120")
    try:
        runtime.prepare(spec)
        runtime.start(spec.handle)
        for chunk in runtime.logs(spec.handle):
            if b"started" in chunk.data:
                break
        runtime.signal(spec.handle, signal.SIGKILL)
        status = runtime.wait(spec.handle, timeout=60)
        assert status is not None and status.code == 137 and "SIGKILL" in status.reason
    finally:
        runtime.destroy(spec.handle)
    _gone(runtime, spec.handle)


def test_secret_and_job_are_cleaned_up_when_a_step_cannot_start(runtime: KubernetesRuntime, shell_image: str) -> None:
    """A task with inputs gets a Secret; whatever ends it, destroy leaves nothing (here the airside image
    is deliberately unavailable, so fetch-inputs cannot be pulled)."""
    rt = KubernetesRuntime(settings=runtime.settings.model_copy(update={"kubernetes_airside_image": "airside.invalid/x:1"}),
                           artifact_token="t", api_client=runtime.api, poll_interval=2)
    spec = _spec(shell_image, "true", inputs=[KubeVolume("src", "/w/src", "vol-src")])
    rt.prepare(spec)
    rt.start(spec.handle)
    secret = rt.core.read_namespaced_secret(secret_name(spec.handle), rt.namespace)
    assert secret.metadata.owner_references[0].name == job_name(spec.handle)
    try:
        with pytest.raises(InfraFailure) as e:
            rt.wait(spec.handle, timeout=120)
        assert e.value.kind == "ImagePull" and "airside.invalid/x:1" in e.value.reason
    finally:
        rt.destroy(spec.handle)
    _gone(rt, spec.handle)


def test_pull_secret_lives_with_its_job_and_privileged_runs_privileged(runtime: KubernetesRuntime,
                                                                       shell_image: str) -> None:
    """Registry credentials become a dockerconfigjson Secret the Job owns (issue 16 item 3): there while the
    Job is, gone with it even when only the Job is deleted (Kubernetes' garbage collector, by the owner
    reference). The same Job runs privileged, as allow_privileged_tasks permits (item 7). The nodes cannot
    reach a registry of this host, so the image is one they hold; the Secret is listed, not pulled with."""
    rt = KubernetesRuntime(settings=runtime.settings.model_copy(update={"allow_privileged_tasks": True}),
                           api_client=runtime.api, poll_interval=2)
    spec = _spec(shell_image, "grep CapEff /proc/self/status", privileged=True,
                 pull_credentials=PullCredentials("registry.example.com", "robot", "pw-never-logged"))
    try:
        status, logs = _run(rt, spec)
        secret = rt.cluster.read_secret(pull_secret_name(spec.handle))
        assert secret is not None and secret["type"] == "kubernetes.io/dockerconfigjson"
        assert [o["name"] for o in secret["metadata"]["ownerReferences"]] == [job_name(spec.handle)]
        pod = rt._pods(job_name(spec.handle))[0][0]
        assert {"name": pull_secret_name(spec.handle)} in pod["spec"]["imagePullSecrets"]
        assert status is not None and status.code == 0, (status, logs)
        cap_eff = int(logs.split(b"CapEff:")[1].split()[0], 16)
        assert cap_eff & (1 << 21), logs  # CAP_SYS_ADMIN: only a privileged container has it
        rt.batch.delete_namespaced_job(job_name(spec.handle), rt.namespace, propagation_policy="Background")
        wait_for(lambda: rt.cluster.read_secret(pull_secret_name(spec.handle)) is None, 60,
                 "the pull Secret going with its Job (owner reference)")
    finally:
        rt.destroy(spec.handle)
    _gone(rt, spec.handle)


def test_web_places_tagged_privileged_builds_by_the_settings(cluster: tuple[str, Any], namespace: str,
                                                              shell_image: str, tmp_path: Path) -> None:
    """Through web with runtime kubernetes (issue 16 items 4, 7, 9): `airside execute --tag T -p` carries the
    tag and the privileged flag from the API through the database to the Job. A tag placed on a node label
    no node has leaves the pod unschedulable (the build errors with the scheduler's reason); a tag placed on
    the nodes' OS label runs, privileged as allow_privileged_tasks permits."""
    from tests.procs import WebProc, run_cli

    token = "it-store-token"
    store_port = _free_port()
    store = subprocess.Popen([sys.executable, "-m", "airside.cli", "baggageclaim"], env={
        **os.environ, "AIRSIDE_BAGGAGECLAIM_BIND_PORT": str(store_port), "AIRSIDE_BAGGAGECLAIM_TOKEN": token,
        "AIRSIDE_VOLUMES_DIR": str(tmp_path / "store"), "AIRSIDE_BAGGAGECLAIM_DRIVER": "naive",
        "AIRSIDE_DATA_DIR": str(tmp_path / "store-data")}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    placement = {"linux": {"nodeSelector": {"kubernetes.io/os": "linux"}},
                 "nowhere": {"nodeSelector": {"airside.dev/no-such-pool": "x"}}}
    web = WebProc(tmp_path, runtime="kubernetes", kubernetes_namespace=namespace, kubernetes_kubeconfig=cluster[0],
                  kubernetes_artifact_url=f"http://127.0.0.1:{store_port}", baggageclaim_token=token,
                  kubernetes_tag_placement=json.dumps(placement), allow_privileged_tasks="true",
                  kubernetes_schedule_timeout=8)
    try:
        web.start()
        task = tmp_path / "task.yml"
        task.write_text(f"platform: linux\nimage_resource: {{type: registry-image, source: {{repository: "
                        f"{shell_image.rsplit(':', 1)[0]}, tag: '{shell_image.rsplit(':', 1)[1]}'}}}}\n"
                        "run: {path: /bin/sh, args: [-c, 'grep CapEff /proc/self/status']}\n")
        r = run_cli(web, "execute", "--tag", "nowhere", "-c", str(task), timeout=180)
        assert r.returncode == 3, r.stdout + r.stderr + web.output()[-3000:]
        assert "node affinity/selector" in r.stdout + r.stderr, r.stdout + r.stderr
        r = run_cli(web, "execute", "--tag", "linux", "-p", "-c", str(task), timeout=180)
        assert r.returncode == 0, r.stdout + r.stderr + web.output()[-3000:]
        cap_eff = int(r.stdout.split("CapEff:")[1].split()[0], 16)
        assert cap_eff & (1 << 21), r.stdout  # CAP_SYS_ADMIN: the Job ran privileged
    finally:
        web.stop()
        store.terminate()
        store.wait(10)


# --------------------------------------------------------------------------- inputs and outputs (airside image)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def artifact_store(cluster: tuple[str, Any], namespace: str, runtime: KubernetesRuntime) -> Iterator[str]:
    image = runtime.settings.kubernetes_airside_image
    if is_tools_kind(cluster[0]):
        ensure_images({"airside": image})  # built from this checkout and loaded, once (cached)
    elif not any(image in n or n.endswith("/" + image) for n in _node_images(cluster[1])):
        unavailable(f"the airside image {image} is not on the nodes of {cluster[0]} (tools/image/build.sh, "
                    "then load it into them); set AIRSIDE_TEST_KUBE_AIRSIDE_IMAGE")
    kubectl = shutil.which("kubectl") or str(CACHE / "kind" / "bin" / "kubectl")
    core = kubernetes.client.CoreV1Api(cluster[1])
    labels = {"app": "artifacts"}
    core.create_namespaced_pod(namespace, {"metadata": {"name": "artifacts", "labels": labels}, "spec": {
        "containers": [{"name": "bc", "image": image, "imagePullPolicy": "IfNotPresent",
                        "args": ["baggageclaim", "--baggageclaim-bind-host", "0.0.0.0", "--baggageclaim-driver", "naive"],
                        "env": [{"name": "AIRSIDE_BAGGAGECLAIM_TOKEN", "value": "test-token"},
                                {"name": "AIRSIDE_VOLUMES_DIR", "value": "/tmp/volumes"}],
                        "ports": [{"containerPort": 7788}],
                        # Ready once it listens: a port-forward whose first connection is refused exits
                        "readinessProbe": {"tcpSocket": {"port": 7788}, "periodSeconds": 1}}]}})
    core.create_namespaced_service(namespace, {"metadata": {"name": "artifacts"}, "spec": {
        "selector": labels, "ports": [{"port": 7788, "targetPort": 7788}]}})
    subprocess.run([kubectl, "--kubeconfig", cluster[0], "-n", namespace, "wait", "--for=condition=Ready",
                    "pod/artifacts", "--timeout=120s"], check=True)
    port = _free_port()
    pf = subprocess.Popen([kubectl, "--kubeconfig", cluster[0], "-n", namespace, "port-forward", "pod/artifacts",
                           f"{port}:7788"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        with VolumeClient(url, "test-token") as vc:
            return bool(vc.info())

    try:
        wait_for(lambda: pf.poll() is not None or answers(), 60,
                 f"the artifact store to answer through kubectl port-forward at {url}", interval=0.2)
        if pf.poll() is not None:
            out = pf.stdout.read().decode(errors="replace") if pf.stdout else ""
            raise AssertionError(f"kubectl port-forward exited with {pf.returncode}: {out}")
        yield url
    finally:
        pf.terminate()
        pf.wait(10)
        core.delete_namespaced_pod("artifacts", namespace, grace_period_seconds=0)


def test_task_with_inputs_and_an_output(runtime: KubernetesRuntime, artifact_store: str, shell_image: str,
                                       tmp_path: Path) -> None:
    from airside.baggageclaim.client import VolumeClient

    with VolumeClient(artifact_store, "test-token") as vc:
        vc.create("in-src")
        buf = BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            data = b"from the artifact store\n"
            info = tarfile.TarInfo("greeting.txt")
            info.size = len(data)
            tar.addfile(info, BytesIO(data))
        vc.stream_in("in-src", buf.getvalue())
        spec = _spec(shell_image, "cat src/greeting.txt; cp src/greeting.txt out/copied.txt; echo made > out/new.txt",
                     dir="/w", inputs=[KubeVolume("src", "/w/src", "in-src")],
                     outputs=[KubeVolume("out", "/w/out", "out-1")])
        try:
            status, logs = _run(runtime, spec)
            assert status is not None and status.code == 0, status
            assert b"from the artifact store" in logs
        finally:
            runtime.destroy(spec.handle)
        vc.get_dir("out-1", tmp_path / "out")
        assert (tmp_path / "out" / "copied.txt").read_text() == "from the artifact store\n"
        assert (tmp_path / "out" / "new.txt").read_text() == "made\n"


def test_log_survives_a_kubelet_restart(runtime: KubernetesRuntime, shell_image: str) -> None:
    """The kubelet serving a task's log restarts while the log is followed (its connection drops): the log
    the caller gets is still whole, in order, without a line twice."""
    spec = _spec(shell_image, "i=0; while [ $i -lt 60 ]; do i=$((i+1)); echo line-$i; sleep 0.2; done")
    got: list[bytes] = []
    try:
        runtime.prepare(spec)
        runtime.start(spec.handle)
        chunks = runtime.logs(spec.handle)
        for chunk in chunks:
            got.append(chunk.data)
            if b"line-5\n" in b"".join(got):
                break
        node = runtime._pods(job_name(spec.handle))[0][-1]["spec"]["nodeName"]
        if shutil.which("docker") is None or subprocess.run(["docker", "inspect", node],
                                                            capture_output=True).returncode != 0:
            pytest.skip(f"node {node} is not a local docker container (a kind node) whose kubelet can be restarted")
        subprocess.run(["docker", "exec", node, "systemctl", "restart", "kubelet"], check=True)
        got.extend(c.data for c in chunks)
        status = runtime.wait(spec.handle, timeout=120)
        assert status is not None and status.code == 0
    finally:
        runtime.destroy(spec.handle)
    lines = b"".join(got).decode().splitlines()
    assert lines == [f"line-{i}" for i in range(1, 61)]
