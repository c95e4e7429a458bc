"""Placement rules and strategies, on a real SQLite database with a controlled clock."""

import random

import pytest

from airside.core.schemas import BuildCreate, FinishReport, Heartbeat, WorkerRegistration, new_boot_epoch
from airside.web import builds, registry
from airside.web.db import WorkerObjectRow


def add_worker(tx, name, now=0.0, **kw):
    with tx() as s:
        registry.register(s, WorkerRegistration(name=name, boot_epoch=new_boot_epoch(), **kw), now=now)


def add_build(tx, tags=(), platform="linux", team=None, cache_key="", now=0.0):
    with tx() as s:
        b = builds.create(s, BuildCreate(config="", tags=list(tags), team=team, cache_key=cache_key),
                          {"platform": platform, "run": {"path": "true"}}, now, requeue_budget=1)
        builds.start(s, b, now)
        return b.id


def place(tx, now=1.0, strategy="fewest-build-containers", rng=None):
    with tx() as s:
        return dict(builds.schedule(s, now, ttl=30, strategy=strategy, rng=rng))


def test_tags_platform_and_team_are_respected(tx):
    add_worker(tx, "plain")
    add_worker(tx, "gpu", tags=["gpu"])
    add_worker(tx, "win", platform="windows")
    add_worker(tx, "team-a", team="a")
    b_plain, b_gpu, b_win, b_team = add_build(tx), add_build(tx, tags=["gpu"]), add_build(tx, platform="windows"), \
        add_build(tx, team="a")
    placed = place(tx)
    assert placed[b_gpu] == "gpu"
    assert placed[b_win] == "win"
    assert placed[b_plain] in ("plain", "team-a") and placed[b_plain] != "gpu"
    assert placed[b_team] in ("plain", "team-a")
    b_missing = add_build(tx, tags=["arm"])
    assert b_missing not in place(tx)  # no worker has the tag: the build waits


def test_draining_and_silent_workers_get_nothing(tx):
    add_worker(tx, "landing")
    add_worker(tx, "retiring")
    add_worker(tx, "silent", now=-100)
    with tx() as s:
        registry.land(s, "landing", now=0)
        registry.retire(s, "retiring", now=0)
    add_build(tx)
    assert place(tx) == {}
    add_worker(tx, "fresh")
    assert list(place(tx).values()) == ["fresh"]


def test_fewest_build_containers_spreads_load_and_respects_capacity(tx):
    add_worker(tx, "a", max_tasks=2)
    add_worker(tx, "b", max_tasks=1)
    ids = [add_build(tx) for _ in range(4)]
    placed = place(tx)
    assert sorted(placed.values()) == ["a", "a", "b"]  # the 4th waits: no capacity left
    assert ids[3] not in placed


def test_volume_locality_prefers_the_worker_with_the_caches(tx):
    add_worker(tx, "a")
    add_worker(tx, "b")
    with tx() as s:
        w = registry.get(s, "b")
        s.add(WorkerObjectRow(worker_name="b", kind="volume", handle="cache-1", boot_epoch=w.boot_epoch, created_at=0,
                              properties={"role": "cache", "cache_key": "k1"}))
    b1 = add_build(tx, cache_key="k1")
    assert place(tx, strategy="volume-locality")[b1] == "b"
    b2 = add_build(tx, cache_key="other")
    assert place(tx, strategy="volume-locality")[b2] == "a"  # no locality: fewest containers wins


def test_random_strategy_uses_every_eligible_worker(tx):
    for n in "abc":
        add_worker(tx, n, max_tasks=100)
    for _ in range(30):
        add_build(tx)
    assert set(place(tx, strategy="random", rng=random.Random(1)).values()) == {"a", "b", "c"}


def test_requeue_budget_then_errored(tx):
    add_worker(tx, "a")
    b = add_build(tx)
    place(tx)
    with tx() as s:
        assert builds.interrupt_worker(s, "a", "worker a stalled", now=2) == [b]
        assert builds.get(s, b).status == "pending"
    place(tx, now=3)
    with tx() as s:
        builds.interrupt_worker(s, "a", "worker a stalled", now=4)
        row = builds.get(s, b)
        assert (row.status, row.reason, row.attempt, row.requeues) == ("errored", "worker a stalled", 2, 1)


def test_stale_attempt_reports_are_refused(tx):
    add_worker(tx, "a")
    b = add_build(tx)
    place(tx)
    with tx() as s:
        builds.interrupt_worker(s, "a", "lost", now=2)
    place(tx, now=3)  # attempt 2
    with tx() as s, pytest.raises(builds.Conflict):
        builds.finish(s, b, "a", FinishReport(attempt=1, status="succeeded", exit_code=0), now=4)


def test_failed_needs_a_nonzero_exit_code(tx):
    add_worker(tx, "a")
    b = add_build(tx)
    place(tx)
    with tx() as s, pytest.raises(builds.Conflict):
        builds.finish(s, b, "a", FinishReport(attempt=1, status="failed", exit_code=0), now=4)


def test_heartbeat_unrelated_to_builds_keeps_them(tx):
    add_worker(tx, "a")
    b = add_build(tx)
    place(tx)
    with tx() as s:
        epoch = registry.get(s, "a").boot_epoch
        registry.heartbeat(s, "a", Heartbeat(boot_epoch=epoch), now=5)
        assert builds.get(s, b).status == "placed"


# --- a pipeline step prefers the worker that ran its inputs' sources ----------------------------------------
def add_source(tx, worker, output="o"):
    """A finished step build that ran on `worker` (in its current boot epoch) and produced `output`."""
    with tx() as s:
        b = builds.create(s, BuildCreate(config=""), {"platform": "linux", "run": {"path": "true"}}, 0.0,
                          requeue_budget=1)
        b.status, b.attempt, b.outputs = "succeeded", 1, [output]
        b.worker_name, b.worker_epoch = worker, registry.get(s, worker).boot_epoch
        return b.id


def add_step(tx, sources, cache_key=""):
    """A pending build whose inputs (name -> source build id) are those builds' output `o`."""
    with tx() as s:
        config = {"platform": "linux", "run": {"path": "true"}, "inputs": [{"name": n, "path": n} for n in sources]}
        b = builds.create(s, BuildCreate(config="", cache_key=cache_key), config, 0.0, requeue_budget=1)
        b.inputs = list(sources)
        b.input_sources = {n: {"build": src, "attempt": 1, "output": "o"} for n, src in sources.items()}
        builds.start(s, b, 0.0)
        return b.id


@pytest.mark.parametrize("strategy", ["fewest-build-containers", "volume-locality", "random"])
def test_a_step_goes_to_the_worker_that_ran_most_of_its_sources_before_the_strategys_order(tx, strategy):
    add_worker(tx, "a")
    add_worker(tx, "b")
    with tx() as s:  # a holds the step's cache: volume-locality alone would pick a
        s.add(WorkerObjectRow(worker_name="a", kind="volume", handle="cache-1", boot_epoch=registry.get(s, "a").boot_epoch,
                              created_at=0, properties={"role": "cache", "cache_key": "k"}))
    on_a, on_b1, on_b2 = add_source(tx, "a"), add_source(tx, "b"), add_source(tx, "b")
    steps = [add_step(tx, {"x": on_a, "y": on_b1, "z": on_b2}, cache_key="k") for _ in range(5)]
    placed = place(tx, strategy=strategy, rng=random.Random(3))
    assert [placed[b] for b in steps] == ["b"] * 5  # two of three sources ran on b; a is first by name, holds
    # the cache, and has fewer containers from the second step on


def test_the_sources_worker_is_skipped_when_full_ineligible_or_in_a_new_boot_epoch(tx):
    add_worker(tx, "a")
    add_worker(tx, "b", max_tasks=1)
    src = add_source(tx, "b")
    first, full = add_step(tx, {"x": src}), add_step(tx, {"x": src})
    assert place(tx) == {first: "b", full: "a"}  # b has room for one: the second step runs elsewhere
    with tx() as s:
        for bid in (first, full):
            builds.get(s, bid).status = "succeeded"
    add_worker(tx, "t", tags=["gpu"])  # tagged: takes only tagged steps
    add_worker(tx, "z")
    on_t, on_z = add_source(tx, "t"), add_source(tx, "z")
    add_worker(tx, "z", now=1.0)  # z restarted on an empty disk: a new boot epoch, its volumes are gone
    tagged_out, new_epoch = add_step(tx, {"x": on_t}), add_step(tx, {"x": on_z})
    # neither t nor z may count: fewest containers, then by name (a, then b with a busy)
    assert place(tx, now=2.0) == {tagged_out: "a", new_epoch: "b"}


def test_assignments_name_the_local_output_volumes_and_keep_outputs_of_steps(tx):
    add_worker(tx, "a")
    add_worker(tx, "b")
    on_a, on_b = add_source(tx, "a"), add_source(tx, "b")
    step = add_step(tx, {"x": on_a, "y": on_b})
    assert place(tx) == {step: "a"}
    with tx() as s:
        epoch = registry.get(s, "a").boot_epoch
        (a,) = builds.assignments(s, "a", epoch)
        assert a.local_inputs == {"x": f"b{on_a}-a1-output-o"}  # y's source ran on b: downloaded
        assert a.keep_outputs is False  # not a pipeline step (no job build): outputs go as they do today
        assert builds.assignments(s, "a", "another-epoch") == []
