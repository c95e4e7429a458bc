"""Naive versus overlay on a real cluster: the same task with a 10,000-file input on a release whose workers
use `naive` and on one using `overlay` (volume dir on the pod's emptyDir, i.e. the node's ext4 /var, where
overlay mounts). Both produce identical outputs. While the task runs (it waits at a gate the test opens), the
worker pod's own mount table shows what the driver did: under overlay the task's output volume, a
copy-on-write child of its input, is an overlay mount whose lower dir is the input's layer; under naive there
is no mount there (a copy). On a volume dir inside the container's own overlay root, overlay cannot mount:
an explicit overlay worker refuses to start naming the fix, and `detect` falls back to naive saying why."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e.conftest import GATE, SAMPLE_ROOTFS, Release, gate_sh, wait_for, write_task

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
outputs: [{{name: out, path: src}}, {{name: summary}}, {{name: {GATE}}}]
run:
  path: sh
  args:
  - -c
  - |
    echo at the gate
    {gate_sh()}
    find src -type f | wc -l > summary/count
    find src -type f | sort | xargs cat | md5sum > summary/digest
    echo "new file" > src/added-by-task
""")


def run_on(rel: Release, tmp: Path, input_dir: Path) -> tuple[float, dict, dict, dict[str, tuple[str, str]]]:
    """Runs the task; while it waits at its gate, reads the worker's volumes and mount table. Returns the
    time, the build, the volumes by handle and the mount table."""
    t = the_task(tmp)
    t0 = time.monotonic()
    ex = rel.cli_background("execute", "-c", str(t), "-i", f"src={input_dir}", "-o", f"summary={tmp / 'summary'}",
                            "-o", f"out={tmp / 'out'}", "--tag", "e2e", log=tmp / "ex.log")
    try:
        wait_for(lambda: "at the gate" in (tmp / "ex.log").read_text(), 300, "the task waiting at its gate")
        b = rel.running_build()
        assert b, f"no running build while its task waits at the gate: {rel.builds(5)}"
        pod = b["worker_name"]
        vols = {v["handle"]: v for v in rel.volumes(pod)}
        mounts = rel.mounts(pod)
        rel.open_gate(pod, b)
        assert ex.wait(600) == 0, (tmp / "ex.log").read_text()[-3000:]
    finally:
        if ex.poll() is None:
            ex.kill()
    elapsed = time.monotonic() - t0
    build = rel.builds(1)[0]
    assert build["id"] == b["id"], (build, b)
    return elapsed, build, vols, mounts


def test_naive_and_overlay_give_identical_outputs(release_factory, tmp_path: Path, input_dir: Path) -> None:  # noqa: ANN001
    results = {}
    for driver in ("naive", "overlay"):
        rel = release_factory(driver, {"worker": {"replicas": 1},
                                       "airside": {"worker": {"baggageclaim_driver": driver}}})
        ws = rel.wait_running_workers({rel.worker_pod(0)})
        assert ws[rel.worker_pod(0)]["volume_driver"] == driver  # the worker reports the driver it runs
        tmp = tmp_path / driver
        elapsed, build, vols, mounts = run_on(rel, tmp, input_dir)
        handle = f"b{build['id']}-a{build['attempt']}"
        child, parent = vols[f"{handle}-output-out"], vols[f"{handle}-in-src"]
        assert (child["strategy"], child["parent"]) == ("cow", parent["handle"]), child
        # what the driver did, from the kernel: the child's data dir is an overlay mount over the input's
        # layer under overlay, and a plain directory (no mount at all) under naive
        mount = mounts.get(child["path"])
        if driver == "overlay":
            assert mount and mount[0] == "overlay", f"{child['path']} is not an overlay mount: {mount}"
            lower = dict(o.partition("=")[::2] for o in mount[1].split(","))["lowerdir"].split(":")
            assert any(f"/{parent['handle']}/" in layer for layer in lower), (lower, parent["handle"])
            assert mounts.get(parent["path"]) is None, f"the input {parent['path']} itself is mounted: {mounts}"
        else:
            assert mount is None, f"naive: {child['path']} is a mount: {mount}"
            assert not [p for p, (fs, _) in mounts.items() if fs == "overlay" and p.startswith(
                child["path"].split("/live/")[0])], "naive: an overlay mount in the volume dir"
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
        def terminated() -> dict | None:
            status = rel.kj("get", "pod", pod)["status"]["containerStatuses"][0]
            return next((t for k in ("state", "lastState") if (t := (status.get(k) or {}).get("terminated"))), None)

        ended = wait_for(terminated, 120, "the worker container exiting")
        assert ended["exitCode"] != 0, ended
        # it never registered (asked once web answers: the release was installed without waiting for it)
        ws = wait_for(lambda: (rel.workers(),), 240, "web answering `airside workers`")[0]
        assert pod not in ws, ws[pod]
    else:
        ws = rel.wait_running_workers({pod})
        assert ws[pod]["volume_driver"] == "naive"
        assert "overlay" in rel.logs(pod)  # the log says why overlay was not chosen
    rel.uninstall()


