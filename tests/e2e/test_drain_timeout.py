"""With a drain timeout shorter than the task, deleting the worker pod ends the build errored with the drain
reason: never lost, never hanging."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import SAMPLE_ROOTFS, Release, wait_for, write_task

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]


@pytest.fixture(scope="module")
def rel(release_factory) -> Release:  # noqa: ANN001
    r = release_factory("drainto", {"worker": {"replicas": 1}, "airside": {"worker": {"drain_timeout": 15}}})
    r.wait_running_workers({r.worker_pod(0)})
    return r


def test_drain_timeout_errors_the_build_with_the_reason(rel: Release, tmp_path: Path) -> None:
    sts = rel.kj("get", "statefulset", f"{rel.fullname}-worker")
    assert sts["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 45  # drain timeout + 30
    t = write_task(tmp_path / "task.yml", f"""
platform: linux
rootfs_uri: {SAMPLE_ROOTFS}
run: {{path: sh, args: [-c, 'echo started; sleep 120; echo never']}}
""")
    ex = rel.cli_background("execute", "-c", str(t), "--tag", "e2e", log=tmp_path / "ex.log")

    b = wait_for(rel.running_build, 180, "task running")
    rel.k("delete", "pod", b["worker_name"], "--wait=false")
    assert ex.wait(300) == 3, (tmp_path / "ex.log").read_text()
    final = rel.builds(1)[0]
    assert final["id"] == b["id"] and final["status"] == "errored"
    assert final["reason"] == f"worker {b['worker_name']} was retiring and drain timeout (15s) passed"
    assert "never" not in (tmp_path / "ex.log").read_text()
