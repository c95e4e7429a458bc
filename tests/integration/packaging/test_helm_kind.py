"""Every chart variant passes `kubectl apply --dry-run=server` on a real API server: the kind cluster that
tools/kind made ($AIRSIDE_CACHE/kind/kubeconfig) or any cluster KUBECONFIG points at. Creates nothing:
server-side dry-run objects are not stored."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.integration.packaging.test_helm import VARIANTS, template

pytestmark = pytest.mark.kind

CACHE = Path(os.environ.get("AIRSIDE_CACHE", "/var/cache/airside"))


def _kubectl() -> list[str] | None:
    exe = shutil.which("kubectl") or str(CACHE / "kind/bin/kubectl")
    if not Path(exe).exists():
        return None
    config = os.environ.get("KUBECONFIG") or str(CACHE / "kind/kubeconfig")
    if not Path(config.split(":")[0]).exists():
        return None
    cmd = [exe, "--kubeconfig", config, "--request-timeout=20s"]
    if subprocess.run([*cmd, "get", "--raw", "/readyz"], capture_output=True).returncode != 0:
        return None
    return cmd


@pytest.fixture(scope="module")
def kubectl() -> list[str]:
    cmd = _kubectl()
    if cmd is None:
        pytest.skip("no reachable cluster (make cluster, or KUBECONFIG) or no kubectl")
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
