"""A worker offers the resource types of its resource_types_dir (tools/resources/build.sh's layout):
registered with web and shown by `airside workers --json`, through real web and worker processes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from airside import config
from airside.config import Settings
from tests.procs import WebProc, WorkerProc, run_cli, state_of, wait_for
from tests.unit.resources.harness import BUILD, OUT


@pytest.fixture(scope="module")
def built_types() -> Path:
    p = subprocess.run(["bash", str(BUILD), str(OUT)], capture_output=True, text=True, timeout=1500)
    assert p.returncode == 0, f"tools/resources/build.sh failed:\n{p.stderr[-4000:]}"
    return OUT


def test_worker_registers_the_types_of_its_dir(web: WebProc, tmp_path: Path, built_types: Path) -> None:
    types_dir = tmp_path / "resource-types"
    types_dir.mkdir()
    for name in ("git", "mock", "time"):
        (types_dir / name).symlink_to(built_types / name)
    # not usable: skipped with a warning, the worker still starts
    (types_dir / "broken").mkdir()
    (types_dir / "broken" / "resource_metadata.json").write_text('{"type": "broken"}')
    (types_dir / "garbled").mkdir()
    (types_dir / "garbled" / "resource_metadata.json").write_text("{not json")
    wk = WorkerProc(tmp_path, web, "rt-worker", resource_types_dir=types_dir).start()
    try:
        wait_for(lambda: state_of(web.client(), "rt-worker") == "running", what="rt-worker running")
        r = run_cli(web, "workers", "--json")
        assert r.returncode == 0, r.stderr
        [worker] = [w for w in json.loads(r.stdout) if w["name"] == "rt-worker"]
        assert worker["resource_types"] == [{"type": name, "image": str(types_dir / name / "rootfs")}
                                            for name in ("git", "mock", "time")]
        log = wk.output()
        assert "no rootfs/opt/resource/check" in log and "unreadable metadata" in log
    finally:
        wk.stop()


def test_a_missing_dir_stops_the_worker_naming_the_setting(web: WebProc, tmp_path: Path) -> None:
    wk = WorkerProc(tmp_path, web, "rt-missing", resource_types_dir=tmp_path / "nope").start()
    try:
        assert wk.wait(30) != 0
        assert "resource_types_dir" in wk.output() and "AIRSIDE_RESOURCE_TYPES_DIR" in wk.output()
        assert state_of(web.client(), "rt-missing") is None
    finally:
        wk.stop()


def test_default_is_the_build_output_when_it_exists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRSIDE_RESOURCE_TYPES_DIR", raising=False)
    monkeypatch.setattr(config, "DEFAULT_RESOURCE_TYPES_DIR", tmp_path / "absent")
    assert Settings().resolved_resource_types_dir is None
    monkeypatch.setattr(config, "DEFAULT_RESOURCE_TYPES_DIR", tmp_path)
    assert Settings().resolved_resource_types_dir == tmp_path
    assert Settings(resource_types_dir=tmp_path / "x").resolved_resource_types_dir == tmp_path / "x"
