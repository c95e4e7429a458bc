"""Pipeline overhead: the same trivial task as a pipeline step and as `airside execute`, in one run, through
one web and one oci worker.

    python bench/pipeline.py [--runs 3]      (as root; needs runc and busybox-static)

Two jobs of 10 steps each, every step the same task (`echo`, writing a small output):
  - chain: 10 steps one after another, each taking the previous step's output — the fair per-step
    comparison: one step at a time, like `airside execute` runs one build at a time;
  - fan:   one step, 8 steps in_parallel each taking its output, one step taking all 8 (fan-out/fan-in).
Prints, as medians over `--runs` builds of each job:
  - per step, created → finished of its build (web's records) against the same span of `airside execute`
    builds of the same task (target ≤ 1.2×); plus the walk gap: a step's predecessor finished → its build
    created (how long web's plan walk takes to move on);
  - trigger → first step running (job build created → first step build started);
  - each job build's wall time (created → finished).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.procs import WebProc, WorkerProc, run_cli, state_of, wait_for  # noqa: E402
from tests.rootfs import make_busybox_rootfs  # noqa: E402

from airside.core import routes  # noqa: E402


def step(name: str, rootfs: Path, inputs: list[str], output: str) -> dict[str, Any]:
    return {"task": name, "config": {
        "platform": "linux", "rootfs_uri": str(rootfs), "inputs": [{"name": i} for i in inputs],
        "outputs": [{"name": output}], "run": {"path": "sh", "args": ["-c", f"echo {name} > {output}/out"]}}}


def pipeline(rootfs: Path) -> dict[str, Any]:
    chain = [step("s0", rootfs, [], "o0")] + [step(f"s{i}", rootfs, [f"o{i - 1}"], f"o{i}") for i in range(1, 10)]
    fan = [step("src", rootfs, [], "src"),
           {"in_parallel": [step(f"f{i}", rootfs, ["src"], f"f{i}") for i in range(8)]},
           step("sink", rootfs, [f"f{i}" for i in range(8)], "sink")]
    return {"jobs": [{"name": "chain", "plan": chain}, {"name": "fan", "plan": fan}]}


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        rootfs = make_busybox_rootfs(tmp / "busybox")
        web = WebProc(tmp, log_level="warning").start()
        wk = WorkerProc(tmp, web, "bench", worker_runtime="oci", log_level="warning", baggageclaim_driver="detect",
                        max_tasks=8).start()
        try:
            wait_for(lambda: state_of(web.client(), "bench") == "running", what="worker")
            c = web.client()
            p = {"team": "main", "pipeline": "bench"}
            c.call(routes.SET_PIPELINE, json={"config": yaml.safe_dump(pipeline(rootfs))}, **p)
            c.call(routes.UNPAUSE_PIPELINE, **p)
            task = tmp / "task.yml"
            task.write_text(yaml.safe_dump(step("ex", rootfs, [], "o")["config"]))
            run_cli(web, "execute", "-c", str(task))  # warm: the image volume is made once, as for the pipeline
            for _ in range(args.runs * 3):
                r = run_cli(web, "execute", "-c", str(task))
                assert r.returncode == 0, r.stderr
            ex_ids = [b.id for b in c.builds(args.runs * 3)]
            results: dict[str, list[dict[str, Any]]] = {"chain": [], "fan": []}
            for job in ("chain", "fan"):
                for _ in range(args.runs + 1):
                    name = c.call(routes.TRIGGER_JOB, job=job, **p)["name"]
                    deadline = time.monotonic() + 300
                    while True:
                        jb = c.call(routes.GET_JOB_BUILD, job=job, build=name, **p)
                        if jb["status"] not in ("pending", "started"):
                            break
                        assert time.monotonic() < deadline, f"{job} #{name} did not finish: {jb}"
                        time.sleep(0.1)
                    assert jb["status"] == "succeeded", jb
                    results[job].append(jb)
            builds = {b.id: b for b in c.builds(1000)}
            # the last step's container may still be tearing down (unmounting its inputs): let it finish
            wait_for(lambda: all(w.active_containers == 0 for w in c.workers()), 60, "the worker idle")
        finally:
            wk.stop()
            web.stop()

    def span(b: Any) -> float:
        return b.finished_at - b.created_at

    ex = med([span(builds[i]) for i in ex_ids if i in builds])
    print(f"task: echo + one small output; {args.runs} builds of each job (after one warm-up each), "
          f"{len(ex_ids)} execute builds")
    print(f"airside execute build      created→finished median {ex * 1000:.0f} ms")
    for job, jbs in results.items():
        jbs = jbs[1:]  # the warm-up build
        steps = [builds[s["build_id"]] for jb in jbs for s in jb["steps"] if s["build_id"] in builds]
        per = med([span(b) for b in steps])
        firsts, gaps = [], []
        for jb in jbs:
            sb = sorted((builds[s["build_id"]] for s in jb["steps"] if s["build_id"] in builds), key=lambda b: b.id)
            firsts.append(min(b.started_at for b in sb if b.started_at) - jb["created_at"])
            if job == "chain":
                gaps += [b.created_at - a.finished_at for a, b in zip(sb, sb[1:], strict=False)]
        wall = med([jb["finished_at"] - jb["created_at"] for jb in jbs])
        versus = (f"{per / ex:.2f}x execute; target <= 1.2x" if job == "chain" else
                  f"{per / ex:.2f}x execute: 8 steps at once on {os.cpu_count()} cores, not the per-step comparison")
        print(f"{job:5} step build           created→finished median {per * 1000:.0f} ms ({versus})")
        if gaps:
            print(f"{job:5} walk gap             predecessor finished→next created median {med(gaps) * 1000:.0f} ms")
        print(f"{job:5} trigger→first step running median {med(firsts) * 1000:.0f} ms; build wall median {wall:.2f}s")


if __name__ == "__main__":
    main()
