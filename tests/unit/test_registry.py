"""Registry state machine on a real SQLite database with a controlled clock."""

import pytest

from airside.core.schemas import Heartbeat, WorkerRegistration, new_boot_epoch
from airside.web import db, registry


def reg(name="w", epoch=None):
    return WorkerRegistration(name=name, boot_epoch=epoch or new_boot_epoch())


def state(tx, name):
    with tx() as s:
        row = s.get(db.WorkerRow, name)
        return row.state if row else None


def test_silent_worker_is_unschedulable_at_once_and_stalled_by_the_sweep(tx):
    with tx() as s:
        registry.register(s, reg("a"), now=100)
    with tx() as s:
        assert [w.name for w in registry.schedulable(s, now=105, ttl=10)] == ["a"]
        assert registry.schedulable(s, now=111, ttl=10) == []  # before any sweep ran
    with tx() as s:
        assert registry.sweep(s, now=111, ttl=10, prune_after=60) == (["a"], [])
    assert state(tx, "a") == "stalled"
    with tx() as s:
        assert registry.sweep(s, now=200, ttl=10, prune_after=60) == ([], ["a"])
    assert state(tx, "a") is None


def test_prune_after_zero_never_prunes(tx):
    with tx() as s:
        registry.register(s, reg("a"), now=0)
    with tx() as s:
        registry.sweep(s, now=100, ttl=10, prune_after=0)
    with tx() as s:
        assert registry.sweep(s, now=10_000, ttl=10, prune_after=0) == ([], [])
    assert state(tx, "a") == "stalled"


def test_prune_after_counts_from_the_stall_not_the_last_heartbeat(tx):
    # silent since 0, but web only marks it stalled at 1000 (say web was down): the stall is 1000,
    # its last heartbeat 0, so the two clocks differ by far more than prune_after
    with tx() as s:
        registry.register(s, reg("a"), now=0)
    with tx() as s:
        assert registry.sweep(s, now=1000, ttl=10, prune_after=60) == (["a"], [])
        assert s.get(db.WorkerRow, "a").state_changed_at == 1000
    with tx() as s:
        assert registry.sweep(s, now=1059, ttl=10, prune_after=60) == ([], [])
    assert state(tx, "a") == "stalled"
    with tx() as s:
        assert registry.sweep(s, now=1061, ttl=10, prune_after=60) == ([], ["a"])
    assert state(tx, "a") is None


def test_heartbeat_revives_a_stalled_worker(tx):
    r = reg("a")
    with tx() as s:
        registry.register(s, r, now=0)
    with tx() as s:
        registry.sweep(s, now=50, ttl=10, prune_after=0)
    with tx() as s:
        registry.heartbeat(s, "a", Heartbeat(boot_epoch=r.boot_epoch), now=51)
    assert state(tx, "a") == "running"


def test_draining_workers_get_no_work_and_stall_if_silent(tx):
    with tx() as s:
        registry.register(s, reg("l"), now=0)
        registry.register(s, reg("r"), now=0)
    with tx() as s:
        registry.land(s, "l", now=1)
        registry.retire(s, "r", now=1)
    with tx() as s:
        assert registry.schedulable(s, now=2, ttl=10) == []
        assert sorted(registry.sweep(s, now=20, ttl=10, prune_after=0)[0]) == ["l", "r"]


def test_reconnect_with_same_epoch_keeps_drain_state(tx):
    r = reg("w")
    with tx() as s:
        registry.register(s, r, now=0)
        registry.retire(s, "w", now=1)
    with tx() as s:
        registry.register(s, r, now=2)
    assert state(tx, "w") == "retiring"


def test_unknown_worker_heartbeat_is_not_found(tx):
    with tx() as s, pytest.raises(registry.NotFound):
        registry.heartbeat(s, "ghost", Heartbeat(boot_epoch=new_boot_epoch()), now=0)


def test_web_restart_gives_workers_one_ttl_before_stalling(tmp_path):
    from airside.config import Settings
    from airside.web.app import Web

    now = [1000.0]
    web = Web(Settings(data_dir=tmp_path, heartbeat_ttl=10, token="t", worker_token="w"), clock=lambda: now[0])
    db.migrate(web.engine)
    with web.tx() as s:
        registry.register(s, reg("old"), now=900)  # last heard of long before this web process started
    assert web.sweep_once() == ([], [])
    now[0] = 1011
    assert web.sweep_once()[0] == ["old"]
    web.engine.dispose()
