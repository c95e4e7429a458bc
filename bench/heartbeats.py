"""Heartbeat throughput: N simulated workers heartbeating against one `airside web` process.

For N = 500, 2000, 5000 and for SQLite and PostgreSQL, registers N workers, then sends heartbeats
round-robin from 64 concurrent connections for a fixed time and prints sustained heartbeats/s and
p50/p99 latency. Baseline, measured in the same run against the same process: GET /healthz (the
HTTP floor). Ratios printed: heartbeat p50 / healthz p50, and sustained rate / the rate N workers
need at the default 10 s interval (headroom; ≥ 1 means web keeps up).

    python bench/heartbeats.py [--seconds 8] [--sizes 500,2000,5000] [--db sqlite,postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.pg import PostgresServer  # noqa: E402
from tests.procs import WebProc  # noqa: E402

from airside.config import Settings  # noqa: E402
from airside.core.schemas import new_boot_epoch  # noqa: E402

CONCURRENCY = 64


async def _drive(client: httpx.AsyncClient, requests: list[tuple[str, str, dict | None]], seconds: float) -> list[float]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    counter = iter(range(10**9))

    async def one_lane() -> None:
        while time.perf_counter() < deadline:
            method, path, body = requests[next(counter) % len(requests)]
            t0 = time.perf_counter()
            r = await client.request(method, path, json=body)
            latencies.append(time.perf_counter() - t0)
            if r.status_code >= 400:
                raise RuntimeError(f"{method} {path}: {r.status_code} {r.text}")

    await asyncio.gather(*(one_lane() for _ in range(CONCURRENCY)))
    return latencies


def _pct(xs: list[float], p: float) -> float:
    return statistics.quantiles(xs, n=100)[int(p) - 1] if len(xs) > 1 else xs[0]


async def bench_one(web: WebProc, n: int, seconds: float) -> dict:
    headers = {"Authorization": f"Bearer {web.WORKER_TOKEN}"}
    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=web.url, headers=headers, limits=limits, timeout=60) as c:
        epochs = {}
        sem = asyncio.Semaphore(CONCURRENCY)

        async def register(i: int) -> None:
            name, epoch = f"sim-{n}-{i}", new_boot_epoch()
            epochs[name] = epoch
            async with sem:
                r = await c.post("/api/v1/workers", json={"name": name, "boot_epoch": epoch})
                r.raise_for_status()

        await asyncio.gather(*(register(i) for i in range(n)))
        base = await _drive(c, [("GET", "/healthz", None)], min(seconds, 3))
        beats = [("PUT", f"/api/v1/workers/{name}/heartbeat", {"boot_epoch": e, "active_containers": 1})
                 for name, e in epochs.items()]
        lat = await _drive(c, beats, seconds)
    rate = len(lat) / seconds
    return {"n": n, "rate": rate, "p50": _pct(lat, 50), "p99": _pct(lat, 99), "base_p50": _pct(base, 50),
            "needed": n / Settings().heartbeat_interval}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--sizes", default="500,2000,5000")
    ap.add_argument("--db", default="sqlite,postgres")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    print(f"{'db':9} {'N':>5} {'beats/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'healthz p50':>11} "
          f"{'p50/healthz':>11} {'headroom':>8}")
    for dbname in args.db.split(","):
        pg = PostgresServer.start() if dbname == "postgres" else None
        try:
            with tempfile.TemporaryDirectory() as tmp:
                web = WebProc(Path(tmp), database_url=pg.url if pg else "", heartbeat_ttl=600,
                              stalled_prune_after=0, log_level="warning").start()
                try:
                    for n in sizes:
                        r = asyncio.run(bench_one(web, n, args.seconds))
                        print(f"{dbname:9} {n:>5} {r['rate']:>8.0f} {r['p50']*1e3:>7.1f} {r['p99']*1e3:>7.1f} "
                              f"{r['base_p50']*1e3:>9.1f}ms {r['p50']/r['base_p50']:>10.1f}x "
                              f"{r['rate']/r['needed']:>7.1f}x", flush=True)
                finally:
                    web.stop()
        finally:
            if pg:
                pg.stop()


if __name__ == "__main__":
    main()
