"""End to end on a Kubernetes cluster: the chart installed with Helm, one release per test module.

The cluster: KUBECONFIG if it answers, else the offline kind cluster of tools/kind (created or reused by
tools/kind/cluster-up.sh) with the project's own kind and kubectl binaries (no downloads). The airside image
is built from this checkout (tools/image/build.sh) and loaded into the kind nodes, once for the sources it is
made of (tests/kubecluster.py ensure_images; `make kind-image` does it ahead). Web is reached on a NodePort
of a node's address, so it stays reachable when its pod restarts. The `airside` CLI runs on the host against
it, as an operator's would.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from airside import __version__
from airside.core.auth import BearerAuth
from airside.core.client import WebClient, tls_verify
from airside.packaging.model import POSTGRES_IMAGE as POSTGRES
from tests.kubecluster import ROOT, Kube, ensure_images, find_or_create_cluster, is_tools_kind, unavailable

# AIRSIDE_E2E_IMAGE_TAG builds and runs the airside image under a tag of its own (a branch's run beside another
# on one cluster, without moving the tag the other one's nodes hold); default: the version
IMAGE_REPO, IMAGE_TAG = "airside", os.environ.get("AIRSIDE_E2E_IMAGE_TAG") or __version__
POSTGRES_IMAGE = ":".join(POSTGRES)
CHART = ROOT / "chart"

# What every release in this suite shares: the locally built images (never pulled; the bundled PostgreSQL
# too), web on a NodePort, workers tagged e2e with quick heartbeats.
BASE_VALUES: dict[str, Any] = {
    "image": {"repository": IMAGE_REPO, "tag": IMAGE_TAG, "pullPolicy": "Never"},
    "web": {"service": {"type": "NodePort"}},
    "worker": {"replicas": 2},
    "airside": {
        "web": {"heartbeat_ttl": 20, "sweep_interval": 1, "log_format": "json"},
        "worker": {"tags": ["e2e"], "heartbeat_interval": 2, "drain_timeout": 120, "reaper_interval": 5,
                   "log_format": "json"},
    },
}
SAMPLE_ROOTFS = "/opt/airside/rootfs/busybox"  # baked into the airside image (packaging.model.SAMPLE_ROOTFS)

# A task that must still be running when the test looks at it waits at a gate the test opens, instead of
# sleeping for a time the test hopes is long enough: gate_sh() blocks until the file `<GATE>/open` exists (the
# output volume GATE of a worker's task: Release.open_gate; any path in a Job's container: kubectl exec
# touch), at most GATE_LIMIT seconds, then fails the task saying so (a test that died must not leave it).
GATE, GATE_LIMIT = "gate", 600


def gate_sh(path: str = f"{GATE}/open") -> str:
    return (f"n=0; until [ -e {path} ]; do n=$((n+1)); if [ $n -gt {GATE_LIMIT * 5} ]; then "
            f'echo "the test never opened {path}"; exit 99; fi; sleep 0.2; done')


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def wait_for(cond: Callable[[], Any], timeout: float = 180, what: str = "condition", every: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if value := cond():
                return value
        except Exception as e:  # noqa: BLE001 - keep polling; report the last error on timeout
            last = e
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}" + (f" (last error: {last!r})" if last else ""))


@pytest.fixture(scope="session")
def kube() -> Kube:
    return find_or_create_cluster()


@pytest.fixture(scope="session")
def airside_image(kube: Kube) -> str:
    """The airside (and bundled PostgreSQL) image built from this checkout and on the kind nodes; cached, so
    a `make test` that loaded it already (the kubernetes runtime's integration tests) costs nothing here."""
    image = f"{IMAGE_REPO}:{IMAGE_TAG}"
    if not is_tools_kind(kube.kubeconfig):
        if not os.environ.get("AIRSIDE_E2E_IMAGE_READY"):
            unavailable(f"not a tools/kind cluster: make {image} and {POSTGRES_IMAGE} pullable by its nodes and "
                        "set AIRSIDE_E2E_IMAGE_READY=1")
        return image
    ensure_images({"airside": image, "postgres": POSTGRES_IMAGE})
    return image


class Release:
    """One helm release of the chart in its own namespace."""

    def __init__(self, kube: Kube, name: str, values: dict[str, Any], tmp: Path) -> None:
        import helm_python

        self.kube, self.name, self.values, self.tmp = kube, name, values, tmp
        self.ns = f"e2e-{name}-{uuid.uuid4().hex[:5]}"
        self.fullname = f"{name}-airside"
        self.helm = helm_python.Config(kubeconfig_path=kube.kubeconfig, namespace=self.ns)
        self.ca_file: Path | None = None  # set by with_tls(): web serves HTTPS with a certificate this CA signed
        self.cert_file: Path | None = None  # ... and this is the certificate (in the Secret web mounts)

    # --- lifecycle --------------------------------------------------------------------------------------
    def with_tls(self) -> Release:
        """Before install: a kubernetes.io/tls Secret (tls.crt, tls.key, ca.crt, as cert-manager writes) for web,
        naming the web Service (workers, `helm test`) and the node addresses (this host, on the NodePort)."""
        from tests.tlscerts import make_certs

        svc = f"{self.fullname}-web"
        nodes = [a["address"] for n in self.kube.json("get", "nodes")["items"] for a in n["status"]["addresses"]
                 if a["type"] == "InternalIP"]
        certs = make_certs(self.tmp / "tls", hosts=(svc, f"{svc}.{self.ns}", f"{svc}.{self.ns}.svc", *nodes))
        self.kube.run("create", "namespace", self.ns)
        self.k("create", "secret", "generic", f"{self.name}-web-tls", "--type=kubernetes.io/tls",
               f"--from-file=tls.crt={certs.cert}", f"--from-file=tls.key={certs.key}", f"--from-file=ca.crt={certs.ca}")
        self.values = merge(self.values, {"web": {"tls": {"secretName": f"{self.name}-web-tls"}}})
        self.ca_file, self.cert_file = certs.ca, certs.cert
        return self

    def install(self, wait: bool = True) -> Release:
        t0 = time.monotonic()
        self.helm.install(str(CHART), self.name, self.values, namespace=self.ns, create_namespace=True,
                          wait="watcher" if wait else None, timeout=600)
        print(f"helm install {self.name} in {self.ns}: {time.monotonic() - t0:.0f}s")
        return self

    def upgrade(self, values: dict[str, Any]) -> None:
        self.values = values
        self.helm.upgrade(str(CHART), self.name, values, namespace=self.ns, wait="watcher", timeout=600)

    def uninstall(self) -> None:
        try:
            self.helm.uninstall(self.name, ignore_not_found=True, timeout=120)
        finally:
            self.kube.run("delete", "namespace", self.ns, "--wait=false", check=False)

    # --- reaching it --------------------------------------------------------------------------------------
    def k(self, *args: str, check: bool = True) -> str:
        return self.kube.run("-n", self.ns, *args, check=check)

    def kj(self, *args: str) -> dict:
        return self.kube.json("-n", self.ns, *args)

    @property
    def web_url(self) -> str:
        port = self.kj("get", "service", f"{self.fullname}-web")["spec"]["ports"][0]["nodePort"]
        node = self.kube.json("get", "nodes")["items"][0]
        ip = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
        return f"{'https' if self.ca_file else 'http'}://{ip}:{port}"

    @property
    def token(self) -> str:
        data = self.kj("get", "secret", self.fullname)["data"]
        return base64.b64decode(data["token"]).decode()

    def client(self) -> WebClient:
        return WebClient(self.web_url, auth=BearerAuth(self.token), timeout=30, ca_file=self.ca_file)

    def env(self) -> dict[str, str]:
        return {**{k: v for k, v in os.environ.items() if not k.startswith("AIRSIDE_")},
                "AIRSIDE_WEB_URL": self.web_url, "AIRSIDE_TOKEN": self.token, "COLUMNS": "200",
                "AIRSIDE_DATA_DIR": str(self.tmp / "cli"),
                **({"AIRSIDE_TLS_CA_FILE": str(self.ca_file)} if self.ca_file else {})}

    def cli(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "airside.cli", *args], env=self.env(), capture_output=True,
                              text=True, timeout=timeout)

    def cli_background(self, *args: str, log: Path) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "airside.cli", *args], env=self.env(),
                                stdout=open(log, "w"), stderr=subprocess.STDOUT)

    def cli_json(self, *args: str) -> Any:
        """`airside <args> --json`, parsed; a failing CLI raises (never an empty answer that a "not in" or
        "none running" assertion would take as the truth)."""
        r = self.cli(*args, "--json", timeout=120)
        assert r.returncode == 0, f"airside {' '.join(args)} --json failed ({r.returncode}): {r.stderr[-2000:]}"
        return json.loads(r.stdout)

    def workers(self) -> dict[str, dict]:
        return {w["name"]: w for w in self.cli_json("workers")}

    def builds(self, n: int = 50) -> list[dict]:
        """The newest builds first."""
        return self.cli_json("builds", "-n", str(n))

    def running_build(self) -> dict | None:
        return next((b for b in self.builds() if b["status"] == "running"), None)

    def wait_running_workers(self, names: set[str], timeout: float = 420) -> dict[str, dict]:
        def ok() -> dict | None:
            ws = self.workers()
            return ws if {n for n, w in ws.items() if w["state"] == "running"} == names else None

        try:
            return wait_for(ok, timeout, f"running workers == {sorted(names)}", every=2)
        except AssertionError as e:  # say what the cluster looked like, not only that it took too long
            pods = self.k("get", "pods", "-o", "wide", check=False)
            logs = {p: self.logs(p)[-2500:] for p in (f"deploy/{self.fullname}-web", *sorted(names))}
            workers = self.cli("workers", "--json")
            raise AssertionError(f"{e}\nworkers: {workers.stdout or workers.stderr}\n{pods}\n"
                                 + "\n".join(f"--- {p}\n{text}" for p, text in logs.items())) from None

    def worker_pod(self, i: int) -> str:
        return f"{self.fullname}-worker-{i}"

    def logs(self, pod: str, container: str | None = None) -> str:
        args = ["logs", pod] + (["-c", container] if container else [])
        return self.k(*args, check=False)

    # --- inside a worker pod -------------------------------------------------------------------------
    def volumes(self, pod: str) -> list[dict]:
        """The worker's volumes, from its own volume server (in the pod, on loopback)."""
        tok = base64.b64decode(self.kj("get", "secret", self.fullname)["data"]["baggageclaim_token"]).decode()
        out = self.k("exec", pod, "--", "/opt/airside/bin/python", "-c",
                     "import httpx; r = httpx.get('http://127.0.0.1:7788/api/v1/volumes', "
                     f"headers={{'Authorization': 'Bearer {tok}'}}); r.raise_for_status(); print(r.text)")
        return json.loads(out.strip().splitlines()[-1])

    def mounts(self, pod: str) -> dict[str, tuple[str, str]]:
        """The worker container's mount table (/proc/self/mountinfo of a process in it, so in its mount
        namespace, where the volume server mounts): mount point -> (fs type, super options)."""
        table: dict[str, tuple[str, str]] = {}
        for line in self.k("exec", pod, "--", "cat", "/proc/self/mountinfo").splitlines():
            left, _, right = line.partition(" - ")
            point = left.split()[4].replace("\\040", " ")
            fstype, _source, superopts = right.split(maxsplit=2)
            table[point] = (fstype, superopts)  # a later mount over the same point hides the earlier one
        assert table, f"no mounts read from {pod}"
        return table

    def open_gate(self, pod: str, build: dict, output: str = GATE) -> None:
        """Let a task waiting in gate_sh() go on: create `open` in its output volume `output` on worker `pod`
        (the container sees the volume's directory, bind-mounted)."""
        handle = f"b{build['id']}-a{build['attempt']}-output-{output}"
        vol = next((v for v in self.volumes(pod) if v["handle"] == handle), None)
        assert vol, f"no volume {handle} on {pod}: {[v['handle'] for v in self.volumes(pod)]}"
        self.k("exec", pod, "--", "touch", f"{vol['path']}/open")


@pytest.fixture(scope="module")
def release_factory(kube: Kube, airside_image: str, tmp_path_factory: pytest.TempPathFactory
                    ) -> Iterator[Callable[..., Release]]:
    made: list[Release] = []

    def make(name: str, values: dict[str, Any] | None = None, wait: bool = True, tls: bool = False) -> Release:
        rel = Release(kube, name, merge(BASE_VALUES, values or {}), tmp_path_factory.mktemp(name))
        made.append(rel)
        if tls:
            rel.with_tls()
        return rel.install(wait=wait)

    yield make
    for rel in made:
        rel.uninstall()


def write_task(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def web_get(rel: Release, path: str) -> httpx.Response:
    return httpx.get(rel.web_url + path, headers={"Authorization": f"Bearer {rel.token}"}, timeout=30,
                     verify=tls_verify(rel.web_url, rel.ca_file))
