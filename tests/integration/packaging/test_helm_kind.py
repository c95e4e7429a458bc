"""Every chart variant passes `kubectl apply --dry-run=server` on a real API server: the kind cluster that
tools/kind made ($AIRSIDE_CACHE/kind/kubeconfig) or any cluster KUBECONFIG points at. Creates nothing:
server-side dry-run objects are not stored. No reachable cluster: a skip, but a failure in CI (CI=true)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.integration.packaging.test_helm import VARIANTS, template
from tests.kubecluster import unavailable

pytestmark = pytest.mark.kind

CACHE = Path(os.environ.get("AIRSIDE_CACHE", "/var/cache/airside"))


@pytest.fixture(scope="module")
def kubectl() -> list[str]:
    exe = shutil.which("kubectl") or str(CACHE / "kind/bin/kubectl")
    if not Path(exe).exists():
        unavailable(f"no kubectl (PATH, {CACHE / 'kind/bin/kubectl'})")
    config = os.environ.get("KUBECONFIG") or str(CACHE / "kind/kubeconfig")
    if not Path(config.split(":")[0]).exists():
        unavailable(f"no cluster: {config} does not exist (make cluster, or KUBECONFIG)")
    cmd = [exe, "--kubeconfig", config, "--request-timeout=20s"]
    r = subprocess.run([*cmd, "get", "--raw", "/readyz"], capture_output=True, text=True)
    if r.returncode != 0:
        unavailable(f"the cluster of {config} does not answer /readyz: {r.stderr.strip()[-500:]}")
    return cmd


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_server_side_dry_run(kubectl: list[str], chart: Path, variant: str) -> None:
    docs = template(chart, VARIANTS[variant])
    ns = "default"
    for d in docs:  # the chart's namespaced objects land in the release namespace "airside"
        d.setdefault("metadata", {})["namespace"] = ns
    text = yaml.safe_dump_all(docs, sort_keys=False)
    r = subprocess.run([*kubectl, "apply", "--dry-run=server", "-n", ns, "-f", "-"], input=text,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
