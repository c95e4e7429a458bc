"""A Kubernetes cluster for tests: the one KUBECONFIG points at, or the offline kind cluster that
tools/kind/cluster-up.sh reuses or creates. Shared by tests/kind, tests/e2e and the kubernetes runtime's
integration tests."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_UP = ROOT / "tools" / "kind" / "cluster-up.sh"
CACHE = Path(os.environ.get("AIRSIDE_CACHE", "/var/cache/airside"))
KIND_CLUSTER = os.environ.get("AIRSIDE_KIND_CLUSTER", "airside")


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
    """KUBECONFIG if it answers, else tools/kind/cluster-up.sh (cached toolchain); skips with the reason
    when neither a cluster nor a docker engine is available."""
    kubeconfig = os.environ.get("KUBECONFIG")
    if not (kubeconfig and _kubeconfig_reachable(kubeconfig)):
        ok, why = _docker_usable()
        if not ok:
            print(f"SKIP kind tests: {why}")
            pytest.skip(why)
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
        pytest.skip("no kubectl found (AIRSIDE_KUBECTL, $AIRSIDE_CACHE/kind/bin/kubectl or PATH)")
    return Kube(kubeconfig, kubectl)


