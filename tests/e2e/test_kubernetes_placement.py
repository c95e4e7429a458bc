"""The Kubernetes runtime's knobs end to end on kind (issue 16, its e2e notes), in one release with no workers:

* placement: a task tagged with a tag that `kubernetes_tag_placement` maps to a nodeSelector runs on the node
  carrying that label (a label the fixture puts on one kind worker node and takes off after);
* caches: a cached task's second run finds the file its first run left (the cache kept in the artifact store);
* private images: a task whose image is in a registry that wants a password errors, naming the pull's
  authorization failure, with the wrong password, and runs with the right one. The registry (distribution,
  tools/registry/build-registry.sh) runs on the host at the kind network's gateway with htpasswd auth; the
  nodes reach it as `localhost:<nodePort>` through a selector-less NodePort Service whose EndpointSlice
  points at the host, and containerd pulls `localhost` registries over plain HTTP, so no node's containerd
  configuration is touched.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Release, gate_sh, wait_for, write_task
from tests.kubecluster import ROOT, Kube, is_tools_kind, node_shell_image, unavailable
from tests.pg import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

LABEL = "airside.dev/e2e-placement"
TOKEN = uuid.uuid4().hex[:10]  # the label's value: this run's, so a leftover label of another run cannot match
USER, PASSWORD = "robot", f"e2e-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def labelled_node(kube: Kube) -> Iterator[str]:
    """One kind worker node (not the control plane) labelled LABEL=TOKEN for the module, unlabelled after."""
    nodes = [n["metadata"]["name"] for n in kube.json("get", "nodes")["items"]
             if "node-role.kubernetes.io/control-plane" not in n["metadata"].get("labels", {})]
    assert len(nodes) >= 2, f"placement needs two worker nodes to mean anything: {nodes}"
    node = sorted(nodes)[-1]
    kube.run("label", "node", node, f"{LABEL}={TOKEN}", "--overwrite")
    try:
        yield node
    finally:
        kube.run("label", "node", node, f"{LABEL}-", check=False)


@pytest.fixture(scope="module")
def rel(release_factory, labelled_node: str) -> Release:  # noqa: ANN001
    return release_factory("place", {
        "kubernetesRuntime": {"enabled": True}, "worker": {"enabled": False},
        "artifactStore": {"persistence": {"enabled": True, "size": "1Gi"}},
        "airside": {"web": {"kubernetes_tag_placement": {"placed": {"nodeSelector": {LABEL: TOKEN}}}}},
    })


@pytest.fixture(scope="module")
def task_image(kube: Kube) -> str:
    return node_shell_image(kube)


def _image_resource(image: str, **source: str) -> str:
    repository, _, tag = image.rpartition(":")
    return json.dumps({"type": "registry-image", "source": {"repository": repository, "tag": tag, **source}})


def _pods(rel: Release) -> list[dict]:
    return rel.kj("get", "pods", "-l", "app.kubernetes.io/managed-by=airside")["items"]


def test_a_tagged_task_lands_on_the_labelled_node(rel: Release, labelled_node: str, task_image: str,
                                                  tmp_path: Path) -> None:
    gate = "/tmp/airside-e2e-gate"
    t = write_task(tmp_path / "task.yml", f"""
platform: linux
image_resource: {_image_resource(task_image)}
run: {{path: sh, args: [-c, 'echo at the gate; {gate_sh(gate)}; echo placed']}}
""")
    log = tmp_path / "ex.log"
    ex = rel.cli_background("execute", "--tag", "placed", "-c", str(t), log=log)
    try:
        wait_for(lambda: "at the gate" in log.read_text(), 180, "the tagged task running (its first line at the CLI)")
        pod = _pods(rel)[0]
        assert pod["spec"].get("nodeSelector") == {LABEL: TOKEN}, pod["spec"].get("nodeSelector")
        assert pod["spec"]["nodeName"] == labelled_node, (pod["spec"]["nodeName"], labelled_node)
        rel.k("exec", pod["metadata"]["name"], "-c", "task", "--", "touch", gate)
        assert ex.wait(300) == 0, log.read_text()[-3000:]
    finally:
        if ex.poll() is None:
            ex.kill()
    assert "placed" in log.read_text()


def test_a_cached_task_finds_what_its_first_run_left(rel: Release, task_image: str, tmp_path: Path) -> None:
    t = tmp_path / "task.yml"  # airside execute keys caches by the task file: both runs share the cache

    def run(script: str) -> subprocess.CompletedProcess:
        write_task(t, f"""
platform: linux
image_resource: {_image_resource(task_image)}
caches: [{{path: deps}}]
run: {{path: sh, args: [-c, {json.dumps(script)}]}}
""")
        r = rel.cli("execute", "-c", str(t), timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        return r

    first = run('echo "found: $(cat deps/stamp 2>/dev/null || echo nothing)"; echo from-the-first-run > deps/stamp')
    assert "found: nothing" in first.stdout, first.stdout
    assert "cache /tmp/build/work/deps: miss" in first.stderr and "cache /tmp/build/work/deps: saved" in first.stderr
    second = run('echo "found: $(cat deps/stamp)"')
    assert "found: from-the-first-run" in second.stdout, second.stdout + second.stderr
    assert "cache /tmp/build/work/deps: hit (" in second.stderr, second.stderr


# --------------------------------------------------------------------------- a private registry


@pytest.fixture(scope="module")
def private_image(kube: Kube, rel: Release, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`localhost:<nodePort>/e2e-<id>/busybox:1` (as the nodes pull it) in a registry that wants USER/PASSWORD."""
    from tests.rootfs import busybox_path, layer_from_dir, make_busybox_rootfs, make_oci_layout

    bcrypt = pytest.importorskip("bcrypt", reason="pip install -e .[dev] (bcrypt makes the htpasswd file)")
    if not is_tools_kind(kube.kubeconfig):
        unavailable("the private-registry case needs the tools/kind cluster (its nodes reach the host on the kind "
                    "docker network)")
    if shutil.which("skopeo") is None or busybox_path() is None:
        unavailable("skopeo and busybox-static are needed to push the test image (apt-get install skopeo busybox-static)")
    built = subprocess.run(["bash", str(ROOT / "tools/registry/build-registry.sh")], capture_output=True, text=True,
                           timeout=800)
    assert built.returncode == 0, f"building the registry failed:\n{built.stderr[-3000:]}"
    gateway = subprocess.run(["docker", "network", "inspect", "kind", "-f",
                              "{{range .IPAM.Config}}{{.Gateway}} {{end}}"], capture_output=True, text=True, check=True
                             ).stdout.split()
    host = next(g for g in gateway if "." in g)  # the host, as the kind nodes reach it (IPv4)
    d = tmp_path_factory.mktemp("registry")
    (d / "htpasswd").write_text(f"{USER}:{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt()).decode()}\n")
    port = free_port()
    (d / "config.yml").write_text(textwrap.dedent(f"""\
        version: 0.1
        log: {{level: info}}
        storage: {{filesystem: {{rootdirectory: {d / 'data'}}}}}
        http: {{addr: "{host}:{port}", secret: for-tests}}
        auth: {{htpasswd: {{realm: airside-e2e, path: {d / 'htpasswd'}}}}}
    """))
    with open(d / "registry.log", "w") as out:
        proc = subprocess.Popen([built.stdout.strip().splitlines()[-1], "serve", str(d / "config.yml")], stdout=out,
                                stderr=subprocess.STDOUT)
    repo = f"e2e-{uuid.uuid4().hex[:8]}/busybox"  # a name no node holds an image under (nothing cached)
    ref = None
    try:
        wait_for(lambda: httpx.get(f"http://{host}:{port}/v2/", timeout=1).status_code == 401, 30,
                 f"the registry answering 401 on {host}:{port}")
        layout = d / "oci"
        make_oci_layout([layer_from_dir(make_busybox_rootfs(d / "busybox"))], layout, as_tar=False, env=["PATH=/bin"])
        push = subprocess.run(["skopeo", "copy", "--insecure-policy", "--dest-tls-verify=false", "--dest-creds",
                               f"{USER}:{PASSWORD}", f"oci:{layout}:latest", f"docker://{host}:{port}/{repo}:1"],
                              capture_output=True, text=True, timeout=120)
        assert push.returncode == 0, push.stderr
        rel.kube.apply(json.dumps({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "e2e-registry", "namespace": rel.ns},
             "spec": {"type": "NodePort", "ports": [{"port": 5000, "targetPort": port, "protocol": "TCP"}]}},
            {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
             "metadata": {"name": "e2e-registry-host", "namespace": rel.ns,
                          "labels": {"kubernetes.io/service-name": "e2e-registry"}},
             "addressType": "IPv4", "ports": [{"port": port, "protocol": "TCP"}],
             "endpoints": [{"addresses": [host]}]}]}))
        node_port = rel.kj("get", "service", "e2e-registry")["spec"]["ports"][0]["nodePort"]
        ref = f"localhost:{node_port}/{repo}:1"
        node = next(iter(_kind_nodes()))
        wait_for(lambda: _node_curl(node, f"http://localhost:{node_port}/v2/") == "401", 60,
                 f"the registry answering on localhost:{node_port} in node {node}")
        yield ref
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        for node in _kind_nodes() if ref else []:  # the nodes keep pulled images: take this run's away
            subprocess.run(["docker", "exec", node, "crictl", "rmi", ref], capture_output=True)


def _kind_nodes() -> list[str]:
    from tests.kubecluster import KIND_BIN, KIND_CLUSTER

    return subprocess.run([str(KIND_BIN), "get", "nodes", "--name", KIND_CLUSTER], capture_output=True, text=True,
                          check=True).stdout.split()


def _node_curl(node: str, url: str) -> str:
    return subprocess.run(["docker", "exec", node, "curl", "-s", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}",
                           url], capture_output=True, text=True).stdout.strip()


def test_a_private_image_errors_with_wrong_credentials_and_runs_with_right_ones(rel: Release, private_image: str,
                                                                                 tmp_path: Path) -> None:
    def task(password: str) -> Path:
        return write_task(tmp_path / "task.yml", f"""
platform: linux
image_resource: {_image_resource(private_image, username=USER, password=password)}
run: {{path: /bin/sh, args: [-c, "echo pulled-with-credentials"]}}
""")

    # wrong first: once a node holds the image, the kubelet would not pull it again (IfNotPresent)
    r = rel.cli("execute", "-c", str(task("wrong-password")), timeout=300)
    assert r.returncode == 3, r.stdout + r.stderr
    b = rel.builds(1)[0]
    print(f"wrong credentials: {b['reason']}")
    assert b["status"] == "errored" and private_image in b["reason"], b
    assert any(w in b["reason"].lower() for w in ("401", "unauthorized", "authoriz")), b["reason"]
    r = rel.cli("execute", "-c", str(task(PASSWORD)), timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "pulled-with-credentials" in r.stdout
    assert PASSWORD not in rel.logs(f"deploy/{rel.fullname}-web")  # never logged
