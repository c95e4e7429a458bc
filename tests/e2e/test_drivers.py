"""Naive versus overlay on a real cluster: the same task with a 10,000-file input on a release whose workers
use `naive` and on one using `overlay` (volume dir on the pod's emptyDir, i.e. the node's ext4 /var, where
overlay mounts). Both produce identical outputs; the overlay workers report the overlay driver and make
copy-on-write children. On a volume dir inside the container's own overlay root, overlay cannot mount:
an explicit overlay worker refuses to start naming the fix, and `detect` falls back to naive saying why."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import SAMPLE_ROOTFS, Release, wait_for, write_task

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]
FILES = 10_000


@pytest.fixture(scope="module")
def input_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("tenk") / "src"
    for i in range(FILES):
        sub = d / f"d{i // 500:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{i:05d}.txt").write_text(f"file {i}\n" * (1 + i % 7))
    return d


def the_task(tmp: Path) -> Path:
    # `out` shares the input's path: the output starts as a copy-on-write child of the input volume
    return write_task(tmp / "task.yml", f"""
platform: linux
rootfs_uri: {SAMPLE_ROOTFS}
inputs: [{{name: src}}]
outputs: [{{name: out, path: src}}, {{name: summary}}]
run:
  path: sh
  args:
  - -c
  - |
    sleep 5
    find src -type f | wc -l > summary/count
    find src -type f | sort | xargs cat | md5sum > summary/digest
    echo "new file" > src/added-by-task
""")


def volumes_of(rel: Release, pod: str) -> list[dict]:
    """The worker's volumes, from its own volume server (through the API server's pod proxy)."""
    token = rel.kj("get", "secret", rel.fullname)["data"]
    import base64

    tok = base64.b64decode(token["baggageclaim_token"]).decode()
    out = rel.kube.run("-n", rel.ns, "exec", pod, "--", "/opt/airside/bin/python", "-c",
                       "import httpx,sys; print(httpx.get('http://127.0.0.1:7788/api/v1/volumes', "
                       f"headers={{'Authorization': 'Bearer {tok}'}}).text)")
    return json.loads(out.strip().splitlines()[-1])


def run_on(rel: Release, tmp: Path, input_dir: Path) -> tuple[float, dict, list[dict]]:
    t = the_task(tmp)
    t0 = time.monotonic()
    ex = rel.cli_background("execute", "-c", str(t), "-i", f"src={input_dir}", "-o", f"summary={tmp / 'summary'}",
                            "-o", f"out={tmp / 'out'}", "--tag", "e2e", log=tmp / "ex.log")

    def running() -> dict | None:
        bs = json.loads(rel.cli("builds", "--json").stdout or "[]")
        return next((b for b in bs if b["status"] == "running"), None)

    b = wait_for(running, 300, "task running")
    vols = volumes_of(rel, b["worker_name"])
    assert ex.wait(600) == 0, (tmp / "ex.log").read_text()[-3000:]
    elapsed = time.monotonic() - t0
    build = json.loads(rel.cli("builds", "--json").stdout)[0]
    return elapsed, build, vols


def test_naive_and_overlay_give_identical_outputs(release_factory, tmp_path: Path, input_dir: Path) -> None:  # noqa: ANN001
    results = {}
    for driver in ("naive", "overlay"):
        rel = release_factory(driver, {"worker": {"replicas": 1},
                                       "airside": {"worker": {"baggageclaim_driver": driver}}})
        ws = rel.wait_running_workers({rel.worker_pod(0)})
        assert ws[rel.worker_pod(0)]["volume_driver"] == driver  # the worker reports the driver it runs
        tmp = tmp_path / driver
        elapsed, build, vols = run_on(rel, tmp, input_dir)
        cow = [v for v in vols if v["strategy"] == "cow"]
        assert cow, f"{driver}: no copy-on-write child among {[(v['handle'], v['strategy']) for v in vols]}"
        results[driver] = {
            "elapsed": elapsed,
            "inputs": build["inputs_ready_at"] - build["image_ready_at"],
            "count": (tmp / "summary" / "count").read_text(),
            "digest": (tmp / "summary" / "digest").read_text(),
            "out": sorted(str(p.relative_to(tmp / "out")) for p in (tmp / "out").rglob("*") if p.is_file()),
        }
        rel.uninstall()
    naive, overlay = results["naive"], results["overlay"]
    assert naive["count"].strip() == str(FILES)
    assert (naive["count"], naive["digest"], naive["out"]) == (overlay["count"], overlay["digest"], overlay["out"])
    assert "added-by-task" in naive["out"] and len(naive["out"]) == FILES + 1
    print(f"\nnaive: execute {naive['elapsed']:.1f}s (inputs {naive['inputs']:.1f}s); "
          f"overlay: execute {overlay['elapsed']:.1f}s (inputs {overlay['inputs']:.1f}s)")


@pytest.mark.parametrize(("driver", "outcome"), [("overlay", "refuses"), ("detect", "falls back")])
def test_volume_dir_on_the_containers_overlay_root(release_factory, driver: str, outcome: str) -> None:  # noqa: ANN001
    # /opt/airside-volumes is inside the container's own filesystem: the node's containerd overlay root
    rel = release_factory(f"nested-{driver}", {
        "worker": {"replicas": 1},
        "airside": {"worker": {"baggageclaim_driver": driver, "volumes_dir": "/opt/airside-volumes"}},
    }, wait=False)
    pod = rel.worker_pod(0)
    if outcome == "refuses":
        logs = wait_for(lambda: (lg := rel.logs(pod) + rel.k("logs", pod, "--previous", check=False))
                        and "tmpfs" in lg and lg, 240, "the worker's start-up error")
        assert "overlay" in logs and "--baggageclaim-driver naive" in logs, logs[-2000:]
        # it exits with the error (and Kubernetes keeps restarting it); a point-in-time `ready` would race the
        # seconds each restart runs before failing again
        def failed_exit() -> int | None:
            status = rel.kj("get", "pod", pod)["status"]["containerStatuses"][0]
            ends = [(status.get(k) or {}).get("terminated") for k in ("state", "lastState")]
            return next((t["exitCode"] for t in ends if t and t.get("exitCode")), None)

        assert wait_for(failed_exit, 120, "the worker container exiting with an error") != 0
        assert pod not in rel.workers()  # it never registered
    else:
        ws = rel.wait_running_workers({pod})
        assert ws[pod]["volume_driver"] == "naive"
        assert "overlay" in rel.logs(pod)  # the log says why overlay was not chosen
    rel.uninstall()


