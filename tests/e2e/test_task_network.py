"""Container networking nested in a worker pod: a task on an airside worker resolves web's Service by its
cluster DNS name and talks to it, through the worker's CNI bridge, the pod's network and kube-proxy, from a
network namespace of its own; afterwards the worker pod holds no namespace mount or veth of it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import SAMPLE_ROOTFS, Release, write_task

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]


@pytest.fixture(scope="module")
def rel(release_factory) -> Release:  # noqa: ANN001
    r = release_factory("net", {"worker": {"replicas": 1}})
    r.wait_running_workers({f"{r.fullname}-worker-0"})
    return r


def line_after(out: str, label: str) -> str:
    assert label in out, out
    return out.split(label, 1)[1].splitlines()[0].strip()


def test_a_task_reaches_webs_service_by_its_dns_name(rel: Release, tmp_path: Path) -> None:
    svc = f"{rel.fullname}-web"
    fqdn = f"{svc}.{rel.ns}.svc.cluster.local"
    t = write_task(tmp_path / "task.yml", f"""
platform: linux
rootfs_uri: {SAMPLE_ROOTFS}
run:
  path: sh
  args:
  - -c
  - |
    echo "address: $(ip -4 -o addr show eth0)"
    echo "netns: $(readlink /proc/self/ns/net)"
    echo "fqdn: $(timeout 30 wget -q -O- http://{fqdn}:8080/healthz)"
    echo "short: $(timeout 30 wget -q -O- http://{svc}:8080/healthz)"
    echo "metadata: $(timeout 10 wget -q -O- http://169.254.169.254/ 2>&1)"
""")
    r = rel.cli("execute", "-c", str(t), "--tag", "e2e", timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    pod = f"{rel.fullname}-worker-0"
    healthz = rel.k("exec", pod, "-c", "worker", "--", "/opt/airside/bin/python", "-c",
                    f"import httpx; print(httpx.get('http://{fqdn}:8080/healthz').text)").strip()
    assert healthz and line_after(out, "fqdn:") == healthz  # what web answers the worker pod itself
    assert line_after(out, "short:") == healthz  # the pod's search domains reach the task's resolv.conf
    assert "inet 10.80." in line_after(out, "address:")  # the default pool, nested in the pod's network
    pod_netns = rel.k("exec", pod, "-c", "worker", "--", "readlink", "/proc/self/ns/net").strip()
    assert line_after(out, "netns:").startswith("net:[") and line_after(out, "netns:") != pod_netns
    assert "refused" in line_after(out, "metadata:").lower()  # restricted_networks' default
    # nothing of the task's network is left in the worker pod
    mounts = rel.k("exec", pod, "-c", "worker", "--", "cat", "/proc/self/mountinfo")
    assert not [m for m in mounts.splitlines() if " - nsfs " in m and m.split()[4].endswith("/netns")], mounts
    links = rel.k("exec", pod, "-c", "worker", "--", "cat", "/proc/net/dev")
    assert "veth" not in links, links
