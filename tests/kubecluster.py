"""A Kubernetes cluster for tests: the one KUBECONFIG points at, or the offline kind cluster that
tools/kind/cluster-up.sh reuses or creates; and the images built from this checkout loaded into its nodes
(`ensure_images`, cached). Shared by tests/kind, tests/e2e and the kubernetes runtime's integration tests.

In CI (CI=true) a cluster or image that is meant to be there and is not fails the test (`unavailable`);
elsewhere it skips with the reason."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import NoReturn

import pytest
from tools.ci.skipguard import in_ci

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_UP = ROOT / "tools" / "kind" / "cluster-up.sh"
CACHE = Path(os.environ.get("AIRSIDE_CACHE", "/var/cache/airside"))
KIND_CLUSTER = os.environ.get("AIRSIDE_KIND_CLUSTER", "airside")
KIND_BIN = CACHE / "kind" / "bin" / "kind"
KIND_KUBECONFIG = CACHE / "kind" / ("kubeconfig" if KIND_CLUSTER == "airside" else f"kubeconfig-{KIND_CLUSTER}")


def unavailable(why: str) -> NoReturn:
    """Something a test needs is not there: a skip on a developer's machine, a failure in CI, where the
    cluster and its images are meant to be up (a skip would keep a run green with a dead cluster)."""
    if in_ci():
        pytest.fail(f"{why} (CI=true: this is meant to be available in CI)", pytrace=False)
    pytest.skip(why)


def _docker_usable() -> tuple[bool, str]:
    if not shutil.which("docker"):
        return False, "no docker CLI on PATH"
    r = subprocess.run(["docker", "info"], capture_output=True, text=True)
    if r.returncode != 0:
        return False, "docker engine not usable (run tools/docker/dockerd-up.sh): " + (
            r.stderr.strip().splitlines() or ["?"]
        )[-1]
    return True, ""


def _kubeconfig_reachable(path: str) -> bool:
    kubectl = _find_kubectl()
    if not kubectl or not Path(path.split(":")[0]).is_file():
        return False
    r = subprocess.run(
        [kubectl, "--kubeconfig", path, "--request-timeout=10s", "get", "--raw", "/readyz"],
        capture_output=True,
    )
    return r.returncode == 0


def _find_kubectl() -> str | None:
    for cand in (os.environ.get("AIRSIDE_KUBECTL"), str(CACHE / "kind" / "bin" / "kubectl")):
        if cand and os.access(cand, os.X_OK):
            return cand
    return shutil.which("kubectl")


RETRIED_VERBS = {"get", "logs", "describe", "wait", "apply", "top", "version", "api-resources"}
TRANSIENT = re.compile(
    r"connection reset by peer|connection refused|broken pipe|unexpected EOF|i/o timeout|TLS handshake timeout"
    r"|the server is currently unable to handle the request|http2: client connection lost"
    r"|error dialing backend|net/http: request canceled|Error from server \(InternalError\)"
    r"|the object has been modified",  # apply racing a controller's update
    re.IGNORECASE,
)


def _transient(args: tuple[str, ...], stderr: str) -> bool:
    verb = next((a for a in args if not a.startswith("-") and a not in _flag_values(args)), "")
    return verb in RETRIED_VERBS and bool(TRANSIENT.search(stderr))


def _flag_values(args: tuple[str, ...]) -> set[str]:
    """The values of flags given as two arguments (`-n ns`), which are not the verb."""
    return {args[i + 1] for i, a in enumerate(args[:-1]) if a in ("-n", "--namespace", "--context", "-l")}


class Kube:
    def __init__(self, kubeconfig: str, kubectl: str):
        self.kubeconfig = kubeconfig
        self.kubectl_bin = kubectl

    def run(self, *args: str, input: str | None = None, check: bool = True) -> str:
        """kubectl with args. A command that only reads (or applies) is retried for up to a minute when
        it fails on a dropped connection to the API server or a kubelet (seen in CI: `kubectl logs`
        answered `connection reset by peer` by the node's kubelet); any other failure is returned or
        raised at once."""
        deadline = time.monotonic() + 60
        while True:
            r = subprocess.run(
                [self.kubectl_bin, "--kubeconfig", self.kubeconfig, *args],
                input=input,
                capture_output=True,
                text=True,
            )
            if r.returncode == 0 or not _transient(args, r.stderr) or time.monotonic() > deadline:
                break
            print(f"kubectl {' '.join(args)}: transient failure, retrying: {r.stderr.strip()}")
            time.sleep(2)
        if check and r.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {r.stderr}\n{r.stdout}")
        return r.stdout

    def apply(self, manifest: str) -> None:
        self.run("apply", "-f", "-", input=manifest)

    def json(self, *args: str) -> dict:
        return json.loads(self.run(*args, "-o", "json"))



def find_or_create_cluster() -> Kube:
    """KUBECONFIG if it answers, else tools/kind/cluster-up.sh (cached toolchain); `unavailable` (a skip, a
    failure in CI) when neither a cluster nor a docker engine is available."""
    kubeconfig = os.environ.get("KUBECONFIG")
    if not (kubeconfig and _kubeconfig_reachable(kubeconfig)):
        ok, why = _docker_usable()
        if not ok:
            print(f"no cluster for the kind tests: {why}")
            unavailable(why)
        t0 = time.monotonic()
        r = subprocess.run(["bash", str(CLUSTER_UP)], stdout=subprocess.PIPE, text=True)
        print(f"cluster-up.sh took {time.monotonic() - t0:.0f}s")
        assert r.returncode == 0, (
            f"tools/kind/cluster-up.sh failed (exit {r.returncode}); see its output above"
        )
        lines = [ln for ln in r.stdout.splitlines() if ln.startswith("KUBECONFIG=")]
        assert lines, f"cluster-up.sh printed no KUBECONFIG= line: {r.stdout!r}"
        kubeconfig = lines[-1].split("=", 1)[1]
    kubectl = _find_kubectl()
    if not kubectl:
        unavailable("no kubectl found (AIRSIDE_KUBECTL, $AIRSIDE_CACHE/kind/bin/kubectl or PATH)")
    return Kube(kubeconfig, kubectl)


# Test pods need sh, sleep, seq, touch and getent. The offline build's local-path helper is a small Debian
# image that every node has pre-loaded; on other clusters (official kind images, KUBECONFIG) set
# AIRSIDE_KIND_TEST_IMAGE to an image with those tools (e.g. debian:bookworm-slim).
def node_shell_image(kube: Kube) -> str:
    if os.environ.get("AIRSIDE_KIND_TEST_IMAGE"):
        return os.environ["AIRSIDE_KIND_TEST_IMAGE"]
    nodes = kube.json("get", "nodes")["items"]
    held = [{n for img in node["status"].get("images", []) for n in img.get("names") or []} for node in nodes]
    common = set.intersection(*held) if held else set()
    for cand in sorted(common):
        if "local-path-helper" in cand and "@" not in cand:
            return cand
    pytest.fail(f"no local-path-helper image on every node (set AIRSIDE_KIND_TEST_IMAGE): {sorted(common)}")


# --------------------------------------------------------------------------- images from this checkout

# what tools/image/build.sh puts into the airside image: the package (pip wheel of the checkout), the
# Dockerfile and the build script itself
IMAGE_SOURCES = ("src", "pyproject.toml", "README.md", "docker", "tools/image")
BUILDS = {"airside": "build.sh", "postgres": "build-postgres.sh"}


def source_hash() -> str:
    h = hashlib.sha256()
    for top in IMAGE_SOURCES:
        p = ROOT / top
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p] if p.is_file() else []
        for f in files:
            rel = f.relative_to(ROOT)
            if "__pycache__" in rel.parts or any(part.endswith(".egg-info") for part in rel.parts):
                continue
            h.update(str(rel).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def is_tools_kind(kubeconfig: str) -> bool:
    """The cluster is the one tools/kind made (so its nodes can be loaded with `kind load`)."""
    return KIND_BIN.exists() and Path(kubeconfig.split(":")[0]).resolve() == KIND_KUBECONFIG.resolve()


def _docker_id(tag: str) -> str | None:
    r = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", tag], capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None


def _node_image_id(node: str, tag: str) -> str | None:
    ref = tag if "/" in tag else f"docker.io/library/{tag}"
    r = subprocess.run(["docker", "exec", node, "crictl", "--timeout", "60s", "inspecti", "-o", "json", ref],
                       capture_output=True, text=True)
    return json.loads(r.stdout)["status"]["id"] if r.returncode == 0 else None


def _drop_untagged(node: str) -> None:
    """Images loaded by earlier runs stay in a node's containerd, untagged, once their tag moved to a newer
    build: remove those, and only those (a tagged image another test run loaded stays, used or not, where a
    blanket `crictl rmi --prune` would take it from under a concurrent run)."""
    r = subprocess.run(["docker", "exec", node, "crictl", "--timeout", "60s", "images", "-o", "json"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return
    for img in json.loads(r.stdout).get("images", []):
        if not img.get("repoTags"):
            subprocess.run(["docker", "exec", node, "crictl", "--timeout", "60s", "rmi", img["id"]],
                           capture_output=True)


def ensure_images(tags: dict[str, str], cluster: str = KIND_CLUSTER) -> None:
    """Build each image ({"airside": tag, "postgres": tag}) from this checkout and load it into the nodes of the
    tools/kind cluster, doing only what is out of date: the airside image is rebuilt when the sources it is
    made of changed since the build recorded in $AIRSIDE_CACHE/image/ (or the tag points elsewhere now), the
    postgres one by its script's own recipe cache; an image is loaded into the nodes when a node holds
    another image under the tag. So `make test` (the kubernetes runtime's artifact store) and `make e2e`
    (the chart) pay for one build and one load between them."""
    t0 = time.monotonic()
    stamp_file = CACHE / "image" / f"built-{tags['airside'].replace(':', '_').replace('/', '_')}.json"
    stamp = json.loads(stamp_file.read_text()) if stamp_file.exists() else {}
    digest = source_hash()
    for kind, tag in tags.items():
        if kind == "airside" and stamp.get("hash") == digest and _docker_id(tag) == stamp.get("id"):
            print(f"{tag}: built from these sources already ({digest})")
            continue
        r = subprocess.run(["bash", str(ROOT / "tools" / "image" / BUILDS[kind]), tag], capture_output=True,
                           text=True)
        assert r.returncode == 0, f"tools/image/{BUILDS[kind]} {tag} failed:\n{r.stderr[-3000:]}"
        if kind == "airside":
            stamp_file.parent.mkdir(parents=True, exist_ok=True)
            stamp_file.write_text(json.dumps({"hash": digest, "id": _docker_id(tag)}))
    nodes = subprocess.run([str(KIND_BIN), "get", "nodes", "--name", cluster], capture_output=True, text=True,
                           check=True).stdout.split()
    assert nodes, f"kind get nodes --name {cluster}: no nodes"
    stale = [tag for tag in tags.values() if any(_node_image_id(n, tag) != _docker_id(tag) for n in nodes)]
    for tag in stale:
        subprocess.run([str(KIND_BIN), "load", "docker-image", tag, "--name", cluster], check=True,
                       capture_output=True)
    still = [(n, tag) for tag in tags.values() for n in nodes if _node_image_id(n, tag) != _docker_id(tag)]
    assert not still, f"kind load left nodes without the image built here: {still}"
    if stale:
        for node in nodes:
            _drop_untagged(node)
    print(f"images {sorted(tags.values())} on the nodes of {cluster} (loaded: {stale or 'none'}) "
          f"in {time.monotonic() - t0:.0f}s")


def airside_tags() -> dict[str, str]:
    from airside import __version__
    from airside.packaging.model import POSTGRES_IMAGE

    return {"airside": f"airside:{__version__}", "postgres": ":".join(POSTGRES_IMAGE)}


if __name__ == "__main__":  # `make kind-image`: build and load the images before the tests that use them
    if sys.argv[1:] != ["images"]:
        sys.exit("usage: python -m tests.kubecluster images")
    config = os.environ.get("KUBECONFIG") or str(KIND_KUBECONFIG)
    if not is_tools_kind(config) and os.environ.get("AIRSIDE_E2E_IMAGE_READY"):
        print(f"{config}: not the tools/kind cluster; AIRSIDE_E2E_IMAGE_READY says its nodes can pull the images")
    elif not is_tools_kind(config):
        sys.exit(f"{config} is not the tools/kind cluster (make cluster): load {sorted(airside_tags().values())} "
                 "into its nodes another way and set AIRSIDE_E2E_IMAGE_READY=1")
    else:
        ensure_images(airside_tags())


