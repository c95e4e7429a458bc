"""A real Kubernetes cluster, built offline by tools/kind (or given by KUBECONFIG).

The session fixture runs ``tools/kind/cluster-up.sh`` which either uses the
cluster KUBECONFIG points at, reuses the running kind cluster, or builds and
creates one (cold: tens of minutes; warm: a few minutes). Skipped, with the
reason printed, when no docker engine is usable and no KUBECONFIG is given (a
failure in CI: CI=true).

Run: ``make cluster-test`` (``python -m pytest -m kind tests/kind -v``).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from tests.kubecluster import CACHE, Kube, find_or_create_cluster, node_shell_image
from tests.procs import wait_for

pytestmark = [pytest.mark.kind, pytest.mark.timeout(5400)]


@pytest.fixture(scope="session")
def kube() -> Kube:
    return find_or_create_cluster()


@pytest.fixture(scope="session")
def namespace(kube: Kube):
    ns = f"airside-kind-test-{uuid.uuid4().hex[:6]}"
    kube.run("create", "namespace", ns)
    # the default service account appears asynchronously (admission rejects pods before it exists)
    wait_for(lambda: kube.run("-n", ns, "get", "serviceaccount", "default", "-o", "name", check=False), 60,
             f"the default service account of namespace {ns}", interval=0.5)
    yield ns
    kube.run("delete", "namespace", ns, "--wait=false", check=False)


def test_nodes_ready(kube: Kube):
    nodes = kube.json("get", "nodes")["items"]
    assert nodes, "cluster has no nodes"
    for n in nodes:
        ready = [c for c in n["status"]["conditions"] if c["type"] == "Ready"]
        assert ready and ready[0]["status"] == "True", f"node {n['metadata']['name']} not Ready: {ready}"
    print("nodes:", [(n["metadata"]["name"], n["status"]["nodeInfo"]["kubeletVersion"]) for n in nodes])


def test_job_completes(kube: Kube, namespace: str):
    image = node_shell_image(kube)
    kube.apply(
        f"""
apiVersion: batch/v1
kind: Job
metadata: {{name: hello, namespace: {namespace}}}
spec:
  backoffLimit: 2
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: hello
        image: {image}
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "echo hello from airside"]
"""
    )
    kube.run("-n", namespace, "wait", "--for=condition=complete", "job/hello", "--timeout=180s")
    assert "hello from airside" in kube.run("-n", namespace, "logs", "job/hello")


def test_pvc_binds(kube: Kube, namespace: str):
    image = node_shell_image(kube)
    kube.apply(
        f"""
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: data, namespace: {namespace}}}
spec:
  accessModes: [ReadWriteOnce]
  resources: {{requests: {{storage: 64Mi}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: writer, namespace: {namespace}}}
spec:
  restartPolicy: Never
  containers:
  - name: w
    image: {image}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo persisted > /data/f && cat /data/f"]
    volumeMounts: [{{name: d, mountPath: /data}}]
  volumes:
  - name: d
    persistentVolumeClaim: {{claimName: data}}
"""
    )
    kube.run("-n", namespace, "wait", "--for=jsonpath={.status.phase}=Bound", "pvc/data", "--timeout=180s")
    kube.run(
        "-n", namespace, "wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/writer", "--timeout=180s"
    )
    assert "persisted" in kube.run("-n", namespace, "logs", "writer")


def test_service_dns(kube: Kube, namespace: str):
    image = node_shell_image(kube)
    kube.apply(
        f"""
apiVersion: v1
kind: Pod
metadata: {{name: web, namespace: {namespace}, labels: {{app: web}}}}
spec:
  containers:
  - name: web
    image: {image}
    imagePullPolicy: IfNotPresent
    command: ["sleep", "infinity"]
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {namespace}}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80}}]
"""
    )
    kube.run("-n", namespace, "wait", "--for=condition=Ready", "pod/web", "--timeout=180s")
    svc_ip = kube.json("-n", namespace, "get", "service", "web")["spec"]["clusterIP"]
    fqdn = f"web.{namespace}.svc.cluster.local"
    kube.apply(
        f"""
apiVersion: v1
kind: Pod
metadata: {{name: resolver, namespace: {namespace}}}
spec:
  restartPolicy: Never
  containers:
  - name: r
    image: {image}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "for i in $(seq 30); do getent hosts {fqdn} && exit 0; sleep 2; done; exit 1"]
"""
    )
    kube.run(
        "-n", namespace, "wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/resolver", "--timeout=180s"
    )
    out = kube.run("-n", namespace, "logs", "resolver")
    assert svc_ip in out, f"{fqdn} resolved to {out!r}, expected {svc_ip}"


def test_pytest_kind_uses_built_toolchain(kube: Kube):
    """pytest-kind(-ng)'s KindCluster drives the same kind binary, cluster and kubectl."""
    cluster_mod = pytest.importorskip("pytest_kind.cluster", reason="pytest-kind(-ng) not installed")
    kind = CACHE / "kind" / "bin" / "kind"
    if not kind.exists() or not str(kube.kubeconfig).startswith(str(CACHE)):
        pytest.skip("cluster not created by tools/kind (KUBECONFIG given); nothing for pytest-kind to reuse")
    kc = cluster_mod.KindCluster(
        os.environ.get("AIRSIDE_KIND_CLUSTER", "airside"),
        kubeconfig=Path(kube.kubeconfig),
        kind_path=kind,
        kubectl_path=Path(kube.kubectl_bin),
    )
    kc.create()  # reuses the running cluster: no download, no new cluster
    assert "Ready" in kc.kubectl("get", "nodes")
