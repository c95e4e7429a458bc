"""`airside execute` overhead: median wall time of a trivial task through web + an oci worker, against
running the same rootfs directly with `runc run`, measured in one run.

    python bench/execute.py [--runs 5] [--sleep 1]      (as root; needs runc and busybox-static)

Prints both medians and the ratio (target: ≤ 1.5× for a 1 s task), plus the per-phase medians from
web's build records so the overhead can be attributed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.procs import WebProc, WorkerProc, run_cli, state_of, wait_for  # noqa: E402
from tests.rootfs import make_busybox_rootfs  # noqa: E402


def runc_baseline(tmp: Path, rootfs: Path, sleep: float, runs: int) -> list[float]:
    bundle = tmp / "bundle"
    bundle.mkdir()
    shutil.copytree(rootfs, bundle / "rootfs", symlinks=True)
    subprocess.run(["runc", "spec"], cwd=bundle, check=True)
    spec = json.loads((bundle / "config.json").read_text())
    spec["process"]["terminal"] = False
    spec["process"]["args"] = ["sh", "-c", f"echo hello; sleep {sleep}"]
    spec["root"]["readonly"] = False
    (bundle / "config.json").write_text(json.dumps(spec))
    times = []
    for i in range(runs):
        t0 = time.perf_counter()
        subprocess.run(["runc", "run", "--bundle", str(bundle), f"bench-{os.getpid()}-{i}"], check=True,
                       stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--sleep", type=float, default=1.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        rootfs = make_busybox_rootfs(tmp / "busybox")
        web = WebProc(tmp, log_level="warning").start()
        wk = WorkerProc(tmp, web, "bench", worker_runtime="oci", log_level="warning", baggageclaim_driver="detect").start()
        try:
            wait_for(lambda: state_of(web.client(), "bench") == "running", what="worker")
            task = tmp / "task.yml"
            task.write_text(f"platform: linux\nrootfs_uri: {rootfs}\n"
                            f"run: {{path: sh, args: [-c, 'echo hello; sleep {args.sleep}']}}\n")
            run_cli(web, "execute", "-c", str(task))  # warm: image volume made once, as on any worker
            ex_times = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                r = run_cli(web, "execute", "-c", str(task))
                ex_times.append(time.perf_counter() - t0)
                assert r.returncode == 0, r.stderr
            base = runc_baseline(tmp, rootfs, args.sleep, args.runs)
            builds = web.client().builds(args.runs)
        finally:
            wk.stop()
            web.stop()
    med_ex, med_base = statistics.median(ex_times), statistics.median(base)
    print(f"task: sleep {args.sleep}s, {args.runs} runs each")
    print(f"runc run (baseline)      median {med_base:.3f}s")
    print(f"airside execute          median {med_ex:.3f}s")
    print(f"ratio execute / runc     {med_ex / med_base:.2f}x  (target <= 1.5x)")

    def span(a: str, b: str) -> float:
        return statistics.median([getattr(x, b) - getattr(x, a) for x in builds])

    print("phase medians (web's records): "
          f"queue {span('queued_at', 'placed_at'):.3f}s, image {span('placed_at', 'image_ready_at'):.3f}s, "
          f"inputs {span('image_ready_at', 'inputs_ready_at'):.3f}s, start {span('inputs_ready_at', 'started_at'):.3f}s, "
          f"run {span('started_at', 'finished_at'):.3f}s, created→finished {span('created_at', 'finished_at'):.3f}s")


if __name__ == "__main__":
    main()
