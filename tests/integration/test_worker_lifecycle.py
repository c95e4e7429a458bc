"""Worker lifecycle through real `airside web` and `airside worker` processes on loopback."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from airside.config import Settings
from tests.procs import WebProc, WorkerProc, run_cli, state_of, wait_for


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def web(request: pytest.FixtureRequest, tmp_path: Path):
    url = request.getfixturevalue("fresh_postgres_db") if request.param == "postgres" else ""
    w = WebProc(tmp_path, database_url=url, stalled_prune_after=0).start()
    yield w
    w.stop()


@pytest.fixture
def sqlite_web(tmp_path: Path):
    w = WebProc(tmp_path).start()
    yield w
    w.stop()


def test_register_heartbeat_and_fields(web: WebProc, tmp_path: Path) -> None:
    wk = WorkerProc(tmp_path, web, "w1", tags=["gpu", "linux-big"], team="main", platform="linux").start()
    try:
        c = web.client()
        wait_for(lambda: state_of(c, "w1") == "running", what="w1 running")
        w = c.worker("w1")
        assert (w.platform, w.tags, w.team, w.ephemeral) == ("linux", ["gpu", "linux-big"], "main", False)
        first = w.last_heartbeat
        wait_for(lambda: c.worker("w1").last_heartbeat > first, what="a heartbeat")
    finally:
        wk.stop()


def test_kill9_stalls_and_restart_on_same_disk_keeps_epoch(web: WebProc, tmp_path: Path) -> None:
    wk = WorkerProc(tmp_path, web, "w2").start()
    c = web.client()
    wait_for(lambda: state_of(c, "w2") == "running", what="w2 running")
    epoch = c.worker("w2").boot_epoch
    wk.signal(signal.SIGKILL)
    wk.wait()
    wait_for(lambda: state_of(c, "w2") == "stalled", what="w2 stalled after TTL")
    wk.start()  # same work dir: the same boot epoch comes back
    try:
        wait_for(lambda: state_of(c, "w2") == "running", what="w2 running again")
        assert c.worker("w2").boot_epoch == epoch
    finally:
        wk.stop()


def test_sigterm_ephemeral_retires_and_leaves(web: WebProc, tmp_path: Path) -> None:
    wk = WorkerProc(tmp_path, web, "eph", ephemeral=True).start()
    c = web.client()
    wait_for(lambda: state_of(c, "eph") == "running", what="running")
    wk.signal(signal.SIGTERM)
    assert wk.wait() == 0
    assert state_of(c, "eph") is None
    assert '"new": "retiring"' in web.output() and '"why": "retired"' in web.output()


def test_sigterm_non_ephemeral_lands_and_comes_back(web: WebProc, tmp_path: Path) -> None:
    wk = WorkerProc(tmp_path, web, "bosh-vm").start()
    c = web.client()
    wait_for(lambda: state_of(c, "bosh-vm") == "running", what="running")
    wk.signal(signal.SIGTERM)
    assert wk.wait() == 0
    assert state_of(c, "bosh-vm") == "landed"
    assert '"new": "landing"' in web.output()
    wk.start()
    try:
        wait_for(lambda: state_of(c, "bosh-vm") == "running", what="landed worker back to running")
    finally:
        wk.stop()


@pytest.mark.parametrize(("sig", "final"), [(signal.SIGUSR1, "landed"), (signal.SIGUSR2, None)])
def test_usr1_lands_usr2_retires(sqlite_web: WebProc, tmp_path: Path, sig: int, final: str | None) -> None:
    wk = WorkerProc(tmp_path, sqlite_web, "sig").start()
    c = sqlite_web.client()
    wait_for(lambda: state_of(c, "sig") == "running", what="running")
    wk.signal(sig)
    assert wk.wait() == 0
    assert state_of(c, "sig") == final


def test_operator_land_and_retire_reach_the_worker(sqlite_web: WebProc, tmp_path: Path) -> None:
    c = sqlite_web.client()
    a = WorkerProc(tmp_path, sqlite_web, "a").start()
    b = WorkerProc(tmp_path, sqlite_web, "b").start()
    wait_for(lambda: state_of(c, "a") == "running" and state_of(c, "b") == "running", what="both running")
    assert run_cli(sqlite_web, "land-worker", "a").returncode == 0
    assert run_cli(sqlite_web, "retire-worker", "b").returncode == 0
    assert a.wait() == 0 and b.wait() == 0  # each worker saw it in a heartbeat answer and drained
    assert state_of(c, "a") == "landed"
    assert state_of(c, "b") is None


def test_prune_rules_and_auto_prune(tmp_path: Path) -> None:
    web = WebProc(tmp_path, stalled_prune_after=1.5).start()
    try:
        c = web.client()
        wk = WorkerProc(tmp_path, web, "p").start()
        wait_for(lambda: state_of(c, "p") == "running", what="running")
        r = run_cli(web, "prune-worker", "p")
        assert r.returncode == 1 and "cannot prune worker 'p': it is running" in r.stderr
        r = run_cli(web, "prune-worker", "nope")
        assert r.returncode == 1 and "unknown worker 'nope'" in r.stderr
        wk.signal(signal.SIGKILL)
        wk.wait()
        wait_for(lambda: state_of(c, "p") == "stalled", what="stalled")
        wait_for(lambda: state_of(c, "p") is None, what="auto-pruned after stalled_prune_after")
        assert "stalled for more than" in web.output()
    finally:
        web.stop()


def test_manual_prune_of_stalled_worker(sqlite_web: WebProc, tmp_path: Path) -> None:
    c = sqlite_web.client()
    wk = WorkerProc(tmp_path, sqlite_web, "gone").start()
    wait_for(lambda: state_of(c, "gone") == "running", what="running")
    wk.signal(signal.SIGKILL)
    wk.wait()
    wait_for(lambda: state_of(c, "gone") == "stalled", what="stalled")
    r = run_cli(sqlite_web, "prune-worker", "gone")
    assert r.returncode == 0, r.stderr
    assert state_of(c, "gone") is None


def _insert_objects(db_url: str, worker: str, epoch: str) -> None:
    engine = create_engine(db_url)
    with engine.begin() as conn:
        for i, kind in enumerate(["container", "volume", "volume"]):
            conn.execute(text("INSERT INTO worker_objects (handle, kind, worker_name, boot_epoch, created_at) "
                              "VALUES (:h, :k, :w, :e, 0)"), {"h": f"{worker}-{i}", "k": kind, "w": worker, "e": epoch})
    engine.dispose()


def test_new_boot_epoch_drops_old_objects_at_once(web: WebProc, tmp_path: Path) -> None:
    c = web.client()
    wk = WorkerProc(tmp_path, web, "sts-0", work_dir=tmp_path / "disk1").start()
    wait_for(lambda: state_of(c, "sts-0") == "running", what="running")
    old_epoch = c.worker("sts-0").boot_epoch
    _insert_objects(Settings(database_url=web.settings["database_url"] or "", data_dir=web.settings["data_dir"])
                    .resolved_database_url, "sts-0", old_epoch)
    assert len(c.objects("sts-0")) == 3
    wk.signal(signal.SIGKILL)
    wk.wait()
    # the pod comes back at once with an empty disk: no stall wait, no prune
    wk2 = WorkerProc(tmp_path, web, "sts-0", work_dir=tmp_path / "disk2").start()
    try:
        wait_for(lambda: c.worker("sts-0").boot_epoch != old_epoch, what="new epoch registered")
        assert c.objects("sts-0") == []
        assert state_of(c, "sts-0") == "running"
    finally:
        wk2.stop()


def test_duplicate_older_process_is_refused_and_stops(sqlite_web: WebProc, tmp_path: Path) -> None:
    c = sqlite_web.client()
    first = WorkerProc(tmp_path, sqlite_web, "dup", work_dir=tmp_path / "d1").start()
    wait_for(lambda: state_of(c, "dup") == "running", what="first running")
    second = WorkerProc(tmp_path, sqlite_web, "dup", work_dir=tmp_path / "d2").start()
    try:
        wait_for(lambda: c.worker("dup").boot_epoch != "", what="registered")
        assert first.wait(15) == 3  # its next heartbeat carries the older epoch: 409, and it stops
        assert "another process registered under this name" in first.output()
        assert second.alive() and state_of(c, "dup") == "running"
    finally:
        first.stop()
        second.stop()


def test_web_restart_keeps_registry_and_worker_reconnects(web: WebProc, tmp_path: Path) -> None:
    c = web.client()
    wk = WorkerProc(tmp_path, web, "steady").start()
    try:
        wait_for(lambda: state_of(c, "steady") == "running", what="running")
        web.stop()
        web.start()
        assert state_of(c, "steady") == "running"  # the registry survived
        hb = c.worker("steady").last_heartbeat
        wait_for(lambda: c.worker("steady").last_heartbeat > hb, what="heartbeats after web restart")
        assert wk.alive()
    finally:
        wk.stop()


def test_worker_re_registers_when_web_lost_its_database(tmp_path: Path) -> None:
    web = WebProc(tmp_path).start()
    wk = WorkerProc(tmp_path, web, "phoenix").start()
    try:
        c = web.client()
        wait_for(lambda: state_of(c, "phoenix") == "running", what="running")
        web.stop()
        (tmp_path / "web" / "airside.db").unlink()
        for extra in ("-wal", "-shm"):
            (tmp_path / "web" / f"airside.db{extra}").unlink(missing_ok=True)
        web.start()
        wait_for(lambda: state_of(c, "phoenix") == "running", what="worker registered again by itself")
        assert "registering again" in wk.output()
    finally:
        wk.stop()
        web.stop()


def test_worker_waits_for_web_that_starts_later(tmp_path: Path) -> None:
    web = WebProc(tmp_path)
    wk = WorkerProc(tmp_path, web, "early").start()
    try:
        wait_for(lambda: "web unreachable, will retry" in wk.output(), what="retry log")
        web.start()
        wait_for(lambda: state_of(web.client(), "early") == "running", what="registered once web is up")
    finally:
        wk.stop()
        web.stop()


def test_state_file_is_what_the_readiness_probe_reads(tmp_path: Path) -> None:
    """The worker's state file (the chart's readiness probe, compose's healthcheck): a file an earlier
    process left is gone before this one registers, it says running once web has the worker running, and
    it is gone once the worker has drained and exited."""
    from airside.packaging.model import components

    probe = list(components()["worker"].readiness.command)
    web = WebProc(tmp_path)
    wk = WorkerProc(tmp_path, web, "ready")
    state = Settings(**{k: v for k, v in wk.settings.items() if k in ("data_dir", "work_dir")}).worker_state_file
    state.parent.mkdir(parents=True)
    state.write_text("running\n")  # left by a process that was killed

    def ready() -> bool:
        return subprocess.run([*probe[:-1], str(state)], capture_output=True).returncode == 0

    wk.start()
    try:
        wait_for(lambda: "web unreachable, will retry" in wk.output(), what="the worker waiting for web")
        assert not state.exists() and not ready()
        web.start()
        wait_for(lambda: state_of(web.client(), "ready") == "running", what="registered")
        wait_for(ready, what="the probe passing")
        assert state.read_text() == "running\n"
        assert run_cli(web, "land-worker", "ready").returncode == 0
        assert wk.wait() == 0
        assert not state.exists() and not ready()
    finally:
        wk.stop()
        web.stop()
