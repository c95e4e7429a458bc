"""Resource checks under load: N resources checking every S seconds on one web (SQLite) and one worker, for M
minutes; the load is web's own check scheduler (open loop: checks fall due by the clock, whatever the system
manages), through the real lifecycle (a check build per check, the request on stdin, versions on stdout).

    python bench/checks.py [--resources 200] [--every 10] [--minutes 10] [--runtime process]

The resource type is a shell script (`/opt/resource/check` printing one version per minute), so the cost
measured is airside's — scheduling, placement, the container, the answer — not the script's. Prints:
  - checks due (N × minutes × 60 / S) and checks started; lag from due to started: p50/p99/max (web's
    airside_check_lag_seconds histogram: bucket bounds, so p99 is "≤ bound");
  - web's and the worker's CPU (user+system seconds / wall seconds: 1.0 = one core busy);
  - database rows at the end: builds, build events and resource versions (they must grow with versions,
    not with checks: only each config's last check build is kept).
The load generator is web's own scheduler, in web's process; nothing else drives it.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.procs import WebProc, WorkerProc, state_of, wait_for  # noqa: E402

from airside.core import routes  # noqa: E402

CHECK = """#!/bin/sh
cat > /dev/null
printf '[{"minute": "%s"}]' "$(date +%Y%m%d%H%M)"
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def histogram(text: str, name: str) -> tuple[list[tuple[float, float]], float]:
    """[(upper bound, cumulative count)] and the count of a Prometheus histogram in a /metrics text."""
    buckets, count = [], 0.0
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1])))
        elif line.startswith(f"{name}_count"):
            count = float(line.rsplit(" ", 1)[1])
    return buckets, count


def quantile(buckets: list[tuple[float, float]], count: float, q: float) -> float:
    for bound, cum in buckets:
        if cum >= q * count:
            return bound
    return float("inf")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--resources", type=int, default=200)
    ap.add_argument("--every", type=float, default=10.0)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--runtime", default="process", choices=["process", "oci"])
    ap.add_argument("--max-tasks", type=int, default=64)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        types = tmp / "types" / "ticker"
        (types / "rootfs" / "opt" / "resource").mkdir(parents=True)
        for script in ("check", "in", "out"):
            p = types / "rootfs" / "opt" / "resource" / script
            p.write_text(CHECK)
            p.chmod(0o755)
        (types / "resource_metadata.json").write_text(json.dumps({"type": "ticker", "version": "1"}))
        web = WebProc(tmp, log_level="warning").start()
        wk = WorkerProc(tmp, web, "bench", worker_runtime=args.runtime, log_level="warning", max_tasks=args.max_tasks,
                        resource_types_dir=tmp / "types").start()
        try:
            wait_for(lambda: state_of(web.client(), "bench") == "running", what="worker")
            config = {"resources": [{"name": f"r{i}", "type": "ticker", "source": {"i": i},
                                     "check_every": f"{args.every:g}s"} for i in range(args.resources)],
                      "jobs": [{"name": "j", "plan": [{"get": f"r{i}"} for i in range(args.resources)]}]}
            c = web.client()
            c.call(routes.SET_PIPELINE, json={"config": yaml.safe_dump(config)}, team="main", pipeline="checks")
            assert web.proc is not None and wk.proc is not None
            w0, k0, t0 = cpu_seconds(web.proc.pid), cpu_seconds(wk.proc.pid), time.monotonic()
            c.call(routes.UNPAUSE_PIPELINE, team="main", pipeline="checks")
            end = t0 + args.minutes * 60
            while time.monotonic() < end:
                time.sleep(min(10.0, max(0.0, end - time.monotonic())))
                print(f"  {time.monotonic() - t0:5.0f}s", flush=True)
            wall = time.monotonic() - t0
            w1, k1 = cpu_seconds(web.proc.pid), cpu_seconds(wk.proc.pid)
            metrics = httpx.get(web.url + "/metrics", timeout=10).text
        finally:
            wk.stop()
            web.stop()
            db = sqlite3.connect(str(tmp / "web" / "airside.db"))
            rows = {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # noqa: S608 - fixed table names
                    for t in ("builds", "build_events", "resource_versions", "resource_configs")}
            db.close()
    buckets, started = histogram(metrics, "airside_check_lag_seconds")
    due = args.resources * wall / args.every
    print(f"{args.resources} resources every {args.every:g}s for {wall:.0f}s on {os.cpu_count()} cores "
          f"({args.runtime} runtime, worker max_tasks {args.max_tasks}); the load: web's own check scheduler")
    print(f"checks due ≈ {due:.0f}, started {started:.0f} ({started / wall:.1f}/s; {100 * started / due:.0f}% of due)")
    print(f"each resource checked every {args.resources * wall / max(started, 1):.1f}s on average (asked: "
          f"{args.every:g}s): a check's next one falls due check_every after it *ended*, so a slow round of checks "
          "stretches the period")
    print(f"lag due→started: p50 ≤ {quantile(buckets, started, 0.5):g}s, p99 ≤ {quantile(buckets, started, 0.99):g}s"
          f", max ≤ {quantile(buckets, started, 1.0):g}s")
    print(f"CPU: web {(w1 - w0) / wall:.2f} cores, worker {(k1 - k0) / wall:.2f} cores (its task processes not "
          "included)")
    print(f"rows at the end: {rows}")


if __name__ == "__main__":
    main()
