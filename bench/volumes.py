"""Volume drivers and streams, as ratios measured in one run (needs root: mounts, loop devices).

Builds a parent tree of N files (default 20,000, ~500 MB total, 100 per directory), then:

1. per driver (naive, overlay, btrfs), in-process on a volume dir under --dir (btrfs: the driver
   loop-mounts its own image there): time to create a copy-on-write child of that parent
   (median of several for overlay/btrfs). Ratio: naive child time / driver child time
   (target ≥ 100 for overlay and btrfs);
2. naive copy against `cp -a` of the same tree on the same filesystem: cp time / naive time
   (target ≥ 0.8);
3. stream the parent from one `airside baggageclaim` process to another on loopback
   (stream-from: tar out of server A, extract with the safety checks in server B) against a local
   `tar -C src -cf - . | tar -C dst -xf -` pipe, runs alternating, best of --stream-runs each:
   pipe time / stream time (target ≥ 0.8). Every run is printed, with the CPU seconds each server
   spent on the stream, itself and in its tar (tar c on A, tar x on B), and how many cores the machine
   kept busy during the pipe and the stream (the stream runs four CPU-bound processes, the pipe two: on a
   machine with few cores that, not the servers' own cost, bounds the ratio). Off tmpfs the copies are removed
   after the last run (room for 2 x --stream-runs copies of the tree).

    sudo python bench/volumes.py [--files 20000] [--mb 500] [--dir /var/tmp] [--streams-only]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.pg import free_port  # noqa: E402

from airside.baggageclaim import detect, mounts  # noqa: E402
from airside.baggageclaim.client import VolumeClient  # noqa: E402
from airside.baggageclaim.filesystem import Filesystem  # noqa: E402
from airside.baggageclaim.repository import Repository  # noqa: E402
from airside.baggageclaim.schemas import Strategy, VolumeSpec  # noqa: E402
from airside.core import log  # noqa: E402

TOKEN = "bench-token"


def make_tree(root: Path, files: int, total_mb: int) -> None:
    pool = os.urandom(4 << 20)
    avg = (total_mb << 20) // files
    for i in range(files):
        d = root / f"d{i // 100:04d}"
        if i % 100 == 0:
            d.mkdir(parents=True)
        size = avg // 2 + (i * 7919) % avg  # sizes spread around the average
        off = (i * 104729) % (len(pool) - size)
        (d / f"f{i:05d}").write_bytes(pool[off : off + size])


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def sh(*cmd: str) -> None:
    subprocess.run(list(cmd), check=True)


def drop(path: Path) -> None:
    for point in reversed(mounts.mounts_under(path)):
        subprocess.run(["umount", "-l", point], capture_output=True)
    shutil.rmtree(path, ignore_errors=True)


def child_times(name: str, base: Path, tree: Path, runs: int) -> float:
    driver, root = detect.choose(name, base / name, btrfs_image_mib=4096)
    repo = Repository(Filesystem(root, driver), driver)
    repo.recover()
    parent = repo.create(VolumeSpec(handle="parent"))
    sh("cp", "-a", f"{tree}/.", parent.path)
    os.sync()
    times = [timed(lambda i=i: repo.create(VolumeSpec(handle=f"c{i}", strategy=Strategy(type="cow", parent="parent"))))
             for i in range(runs)]
    repo.destroy("parent", cascade=True)
    return statistics.median(times)


def cpu(pid: int) -> tuple[float, float]:
    """CPU seconds of a process so far: its own, and its waited-for children's (the tars it ran)."""
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(f[11]) + int(f[12])) / tick, (int(f[13]) + int(f[14])) / tick


def busy() -> float:
    """CPU seconds the whole machine has been busy (not idle, not waiting for I/O), all cores together."""
    v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


def timed_busy(fn) -> tuple[float, float]:
    """fn's wall time, and how many cores the machine kept busy meanwhile (on average)."""
    b0 = busy()
    t = timed(fn)
    return t, (busy() - b0) / t


def start_server(volumes_dir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "airside.cli", "baggageclaim", "--volumes-dir", str(volumes_dir),
         "--baggageclaim-driver", "naive", "--baggageclaim-bind-port", str(port), "--baggageclaim-token", TOKEN,
         "--data-dir", str(volumes_dir.parent / "data"), "--log-level", "warning"])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz").status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError("volume server did not start")


def drivers_part(args: argparse.Namespace, base: Path, tree: Path) -> None:
    """1. COW child per driver, 2. naive copy against cp -a (alternating, best of two each)."""
    cp_t, naive_t = [], []
    driver, root = detect.choose("naive", base / "naive-copy")
    repo = Repository(Filesystem(root, driver), driver)
    parent = repo.create(VolumeSpec(handle="parent"))
    sh("cp", "-a", f"{tree}/.", parent.path)
    for i in range(2):
        os.sync()
        cp_t.append(timed(lambda i=i: sh("cp", "-a", str(tree), str(base / f"cp{i}"))))
        os.sync()
        naive_t.append(timed(lambda i=i: repo.create(
            VolumeSpec(handle=f"n{i}", strategy=Strategy(type="cow", parent="parent")))))
    repo.destroy("parent", cascade=True)
    naive_child = min(naive_t)

    # 1. COW child per driver
    results = {"naive": naive_child}
    for name in ("overlay", "btrfs"):
        try:
            results[name] = child_times(name, base, tree, args.runs)
        except Exception as e:  # noqa: BLE001 - report a driver that cannot run here and go on
            print(f"{name}: unavailable: {e}")
    print("\nCOW child of the parent (median):")
    for name, sec in results.items():
        ratio = "" if name == "naive" else f"  naive/{name} = {naive_child / sec:,.0f}x  (target >= 100x)"
        print(f"  {name:8s} {sec * 1000:10.2f} ms{ratio}")
    print(f"\nnaive copy {min(naive_t):.2f}s vs cp -a {min(cp_t):.2f}s: "
          f"cp/naive = {min(cp_t) / min(naive_t):.2f}x  (target >= 0.8x)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=20_000)
    ap.add_argument("--mb", type=int, default=500)
    ap.add_argument("--dir", type=Path, default=Path("/var/tmp"))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--stream-runs", type=int, default=3, help="tar pipe and stream runs, alternating")
    ap.add_argument("--streams-only", action="store_true", help="only part 3 (stream between two servers)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/volumes.py needs root (mounts, loop devices)")
    log.configure("warning", "console")
    base = Path(tempfile.mkdtemp(prefix="airside-bench-volumes-", dir=args.dir))
    procs: list[subprocess.Popen] = []
    try:
        tree = base / "tree"
        t = timed(lambda: make_tree(tree, args.files, args.mb))
        size = sum(f.stat().st_size for f in tree.rglob("*") if f.is_file())
        print(f"parent: {args.files} files, {size / 1e6:.0f} MB in {base} ({mounts.fs_type(base)}), made in {t:.1f}s")

        if not args.streams_only:
            drivers_part(args, base, tree)

        # 3. stream between two servers against a tar pipe, alternating (a busy machine's load drifts)
        pa, url_a = start_server(base / "server-a")
        pb, url_b = start_server(base / "server-b")
        procs += [pa, pb]
        pipe_t, stream_t, split, pipe_cores, stream_cores = [], [], [], [], []
        # on a disk file system the copies stay until the last run: ext4 skips inodes freed in the last
        # minutes when it allocates, so 20,000 deletions just before a run slow that run down (and only that
        # one); tmpfs has no such thing, but would run short of memory
        keep = mounts.fs_type(base) != "tmpfs"
        with VolumeClient(url_a, TOKEN) as a, VolumeClient(url_b, TOKEN) as b:
            src = a.create("src")
            sh("cp", "-a", f"{tree}/.", src.path)
            for i in range(args.stream_runs):
                dst = base / f"pipe{i}"
                dst.mkdir()
                os.sync()
                t, cores = timed_busy(lambda dst=dst: sh("sh", "-c", f"tar -C {tree} -cf - . | tar -C {dst} -xf -"))
                pipe_t.append(t)
                pipe_cores.append(cores)
                if not keep:
                    shutil.rmtree(dst)
                b.create(f"dst{i}")
                os.sync()
                before = cpu(pa.pid), cpu(pb.pid)
                t, cores = timed_busy(lambda i=i: b.stream_from(f"dst{i}", url=url_a, source="src"))
                stream_t.append(t)
                stream_cores.append(cores)
                after = cpu(pa.pid), cpu(pb.pid)
                split.append([x1 - x0 for p0, p1 in zip(before, after, strict=True)
                              for x0, x1 in zip(p0, p1, strict=True)])
                got = b.size(f"dst{i}")
                assert got == size, f"streamed {got} bytes, expected {size}"
                if not keep:
                    b.destroy(f"dst{i}")
            for i in range(args.stream_runs if keep else 0):
                shutil.rmtree(base / f"pipe{i}")
                b.destroy(f"dst{i}")
        for i, (pt, st, (a_self, a_tar, b_self, b_tar), pc, sc) in enumerate(
                zip(pipe_t, stream_t, split, pipe_cores, stream_cores, strict=True)):
            print(f"  run {i}: tar | tar {pt:.2f}s, stream {st:.2f}s; stream CPU: server A {a_self:.2f}s"
                  f" + tar c {a_tar:.2f}s, server B {b_self:.2f}s + tar x {b_tar:.2f}s; cores busy: pipe {pc:.1f},"
                  f" stream {sc:.1f} of {os.cpu_count()}")
        print(f"stream A->B over loopback {min(stream_t):.2f}s vs tar | tar {min(pipe_t):.2f}s (best of "
              f"{args.stream_runs}, alternating): pipe/stream = {min(pipe_t) / min(stream_t):.2f}x  (target >= 0.8x)")
    finally:
        for p in procs:
            p.terminate()
            p.wait()
        drop(base)
    return 0


if __name__ == "__main__":
    sys.exit(main())
