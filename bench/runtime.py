"""OCI runtime overhead: a trivial `true` task through OCIRuntime vs `runc run` of the same bundle.

Measures, in one run and interleaved, the median wall time of
  - airside: OCIRuntime.prepare → start → wait → destroy (shim, state dir, cgroup OOM check, runc delete)
  - baseline: `runc run --bundle <the bundle airside generated> <id>` directly (runc deletes on exit)
and prints both and the ratio; then, also interleaved, the same airside round trip with the container on
the bridge network (a namespace made, CNI ADD of bridge + host-local + firewall and loopback, DEL at destroy)
against the loopback network (goal: bridge / loopback <= 1.2x). Needs root, runc, busybox-static and, for
the second part, the CNI plugins (Debian's containernetworking-plugins); the bridge uses a pool of its own.

    python bench/runtime.py [--runs 21] [--sleep SECONDS]   # --sleep 1: a 1 s task instead of `true`
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.rootfs import make_busybox_rootfs  # noqa: E402

from airside.core import log as airside_log  # noqa: E402
from airside.runtime import ContainerSpec  # noqa: E402
from airside.runtime.net import NetworkConfig  # noqa: E402
from airside.runtime.oci import OCIRuntime  # noqa: E402

BENCH_POOL = "10.126.0.0/24"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=21)
    ap.add_argument("--sleep", type=float, default=0.0, help="run `sleep SECONDS` instead of `true`")
    args = ap.parse_args()
    airside_log.configure(level="warning", fmt="console")
    with tempfile.TemporaryDirectory(prefix="airside-bench-") as tmp:
        root = Path(tmp)
        rootfs = make_busybox_rootfs(root / "rootfs")
        net = NetworkConfig(pool=BENCH_POOL, cni_dir=root / "cni")
        rt = OCIRuntime(root / "state", network=net)

        # the baseline bundle: exactly what airside generates, with its own cgroup path
        argv = ["sleep", f"{args.sleep:g}"] if args.sleep else ["true"]
        task = " ".join(argv)
        rt.prepare(ContainerSpec(handle="template", rootfs=rootfs, path=argv[0], args=argv[1:]))
        bundle = root / "bundle"
        shutil.copytree(root / "state/template/bundle", bundle)
        config = json.loads(
            (bundle / "config.json").read_text().replace(str(root / "state/template/bundle"), str(bundle))
        )
        config["linux"]["cgroupsPath"] = "/airside/bench-baseline"
        (bundle / "config.json").write_text(json.dumps(config))
        rt.destroy("template")
        runc_root = root / "runc-baseline"

        def airside_once(i: int, network: str = "loopback") -> float:
            t0 = time.perf_counter()
            h = f"bench-{network}-{i}"
            rt.prepare(ContainerSpec(handle=h, rootfs=rootfs, path=argv[0], args=argv[1:], network=network))
            rt.start(h)
            status = rt.wait(h)
            rt.destroy(h)
            dt = time.perf_counter() - t0
            assert status is not None and status.code == 0, status
            return dt

        def runc_once(i: int) -> float:
            t0 = time.perf_counter()
            subprocess.run(
                ["runc", "--root", str(runc_root), "run", "--bundle", str(bundle), f"base-{i}"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=True,
            )  # fmt: skip
            return time.perf_counter() - t0

        airside_once(-1), runc_once(-1), airside_once(-1, "bridge")  # warm caches (and make the bridge)
        a, b, c = [], [], []
        for i in range(args.runs):
            a.append(airside_once(i))
            b.append(runc_once(i))
            c.append(airside_once(i, "bridge"))
        rt.close()
        assert rt.network is not None
        rt.network.remove()
    ma, mb, mc = statistics.median(a), statistics.median(b), statistics.median(c)
    task = "true" if not args.sleep else f"sleep {args.sleep:g}"
    print(f"runs: {args.runs} each, interleaved")
    print(f"airside OCIRuntime prepare→start→wait→destroy ({task}): median {ma * 1000:.1f} ms")
    print(f"runc run of the same bundle ({task}): median {mb * 1000:.1f} ms")
    print(f"ratio airside / runc: {ma / mb:.2f}x (overhead {1000 * (ma - mb):.1f} ms per task)")
    print(f"airside with the bridge network ({task}): median {mc * 1000:.1f} ms")
    print(f"ratio bridge / loopback: {mc / ma:.2f}x (network setup and teardown {1000 * (mc - ma):.1f} ms per task;"
          " goal <= 1.2x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
