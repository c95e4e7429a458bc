"""End-to-end time of a trivial task through the kubernetes Job runtime, against a bare
`kubectl run --restart=Never` pod of the same image on the same cluster, as a ratio (target ≤ 1.3×).

    python bench/k8s_job.py [--runs 5] [--image IMAGE]

Runtime: prepare → start → wait (exit status read) → destroy requested. Baseline: `kubectl run
--restart=Never` → `kubectl wait` for phase Succeeded → `kubectl delete --wait=false`. Both run
`/bin/sh -c true` in an image the nodes already hold. Runs alternate between the two so drift in cluster
load hits both alike; medians are compared. The baseline pays two kubectl process starts and kubectl
wait's polling, which is how an operator would run a bare pod; the runtime uses one API client and a watch. Skips (exit 0, with a message) when no cluster answers.
The cluster: $KUBECONFIG, else $AIRSIDE_CACHE/kind/kubeconfig (tools/kind/cluster-up.sh).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

CACHE = Path(os.environ.get("AIRSIDE_CACHE", "/var/cache/airside"))
HINTS = ("busybox", "local-path-helper", "debian", "alpine", "kindnetd")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--image", default=os.environ.get("AIRSIDE_TEST_KUBE_IMAGE"))
    args = ap.parse_args()

    kubeconfig = (os.environ.get("KUBECONFIG") or "").split(":")[0] or str(CACHE / "kind" / "kubeconfig")
    if not Path(kubeconfig).is_file():
        print(f"skip: no cluster (KUBECONFIG unset and {kubeconfig} missing; run `make cluster`)")
        return 0
    try:
        from kubernetes import client

        from airside.config import Settings
        from airside.runtime.kubernetes import KubernetesRuntime, KubeTaskSpec, load_api_client

        api = load_api_client(kubeconfig)
        client.VersionApi(api).get_code(_request_timeout=10)
    except Exception as e:  # noqa: BLE001
        print(f"skip: the cluster of {kubeconfig} does not answer: {e}")
        return 0
    kubectl = shutil.which("kubectl") or str(CACHE / "kind" / "bin" / "kubectl")
    core = client.CoreV1Api(api)
    image = args.image
    if not image:
        names = [n for node in core.list_node().items for img in node.status.images or [] for n in img.names or []
                 if "@sha256:" not in n]
        image = next((n for h in HINTS for n in names if h in n), None)
        if not image:
            print(f"skip: no image with a shell on the nodes (have {names}); pass --image")
            return 0

    ns = f"airside-bench-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": ns}})
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                core.read_namespaced_service_account("default", ns)
                break
            except client.exceptions.ApiException:
                time.sleep(0.3)
        rt = KubernetesRuntime(settings=Settings(kubernetes_namespace=ns, kubernetes_kubeconfig=kubeconfig),
                               api_client=api, poll_interval=5)
        k = [kubectl, "--kubeconfig", kubeconfig, "-n", ns]

        def job_once(i: int) -> float:
            spec = KubeTaskSpec(handle=f"bench-{i}", image=image, path="/bin/sh", args=["-c", "true"])
            t0 = time.perf_counter()
            rt.prepare(spec)
            rt.start(spec.handle)
            status = rt.wait(spec.handle, timeout=120)
            dt = time.perf_counter() - t0
            rt.destroy(spec.handle)
            assert status is not None and status.code == 0, status
            return dt

        def pod_once(i: int) -> float:
            name = f"bare-{i}"
            t0 = time.perf_counter()
            subprocess.run([*k, "run", name, "--restart=Never", f"--image={image}", "--image-pull-policy=IfNotPresent",
                            "--command", "--", "/bin/sh", "-c", "true"], check=True, capture_output=True)
            subprocess.run([*k, "wait", f"pod/{name}", "--for=jsonpath={.status.phase}=Succeeded", "--timeout=120s"],
                           check=True, capture_output=True)
            dt = time.perf_counter() - t0
            subprocess.run([*k, "delete", "pod", name, "--wait=false"], capture_output=True)
            return dt

        job_once(-1), pod_once(-1)  # warm-up: image on the node, API connections
        jobs, pods = [], []
        for i in range(args.runs):
            jobs.append(job_once(i))
            pods.append(pod_once(i))
        mj, mp = statistics.median(jobs), statistics.median(pods)
        print(f"image {image}, {args.runs} runs each")
        print(f"job runtime  median {mj:.2f}s  ({', '.join(f'{x:.2f}' for x in jobs)})")
        print(f"kubectl run  median {mp:.2f}s  ({', '.join(f'{x:.2f}' for x in pods)})")
        print(f"ratio job/bare pod: {mj / mp:.2f}x (target <= 1.3x)")
    finally:
        core.delete_namespace(ns, propagation_policy="Background")
    return 0


if __name__ == "__main__":
    sys.exit(main())
