"""The kubernetes runtime package loads the `kubernetes` client library only when it is used: the worker,
the CLI and web without the Kubernetes runtime import `airside.runtime.kubernetes` (or what imports it)
and must not pay for, or depend on, the client."""

from __future__ import annotations

import json
import subprocess
import sys


def _run(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_importing_the_package_and_the_cli_loads_no_kubernetes_client() -> None:
    seen = _run("import json, sys, airside.runtime.kubernetes as k, airside.cli; "
                "k.build_job, k.classify, k.KubeTaskSpec; "
                "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'kubernetes' "
                "or m.startswith('airside.runtime.kubernetes.'))))")
    assert "kubernetes" not in seen, seen
    assert "airside.runtime.kubernetes.client" not in seen and "airside.runtime.kubernetes.runtime" not in seen


def test_the_runtime_and_the_client_functions_load_on_first_use() -> None:
    seen = _run("import json, sys, airside.runtime.kubernetes as k; "
                "from airside.runtime.kubernetes import KubernetesRuntime; "
                "print(json.dumps({'client': 'kubernetes' in sys.modules, 'module': KubernetesRuntime.__module__, "
                "'all': [n for n in k.__all__ if getattr(k, n, None) is None], "
                "'start_job': k.start_job.__module__}))")
    assert seen == {"client": True, "module": "airside.runtime.kubernetes.runtime", "all": [],
                    "start_job": "airside.runtime.kubernetes.client"}
