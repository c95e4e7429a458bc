"""Worker-side GC decisions (airside.web.gc.decide) on a real SQLite database: what a reaper report's objects
become. tests/integration/test_builds_infra.py and test_pipeline_locality.py run the same rules with real
workers."""

from __future__ import annotations

from airside.core.schemas import (
    BuildCreate,
    JobBuildStatus,
    ReaperReport,
    ReportedObject,
    WorkerRegistration,
    new_boot_epoch,
)
from airside.pipeline import load_pipeline_config
from airside.web import builds, gc, pipelines, registry
from airside.web.db import BuildRow, JobBuildRow

# an output at an input's path starts as a copy-on-write child of that input's volume
CONFIG = {"platform": "linux", "rootfs_uri": "/", "run": {"path": "true"},
          "inputs": [{"name": "src", "path": "src"}, {"name": "other", "path": "other"}],
          "outputs": [{"name": "out", "path": "src"}, {"name": "res", "path": "res"}]}


def volumes(build: int, attempt: int) -> list[ReportedObject]:
    """What a worker holds of one attempt after it finished: every build-scoped volume it made."""
    h = f"b{build}-a{attempt}"
    props = {"build": str(build), "attempt": str(attempt)}
    return [ReportedObject(handle=f"{h}-{suffix}", kind="volume", properties={"role": role, **props})
            for suffix, role in (("in-src", "input"), ("in-other", "input"), ("output-out", "output"),
                                 ("output-res", "output"), ("rootfs", "rootfs"))]


def add_build(s, epoch: str, status: str, job_build_id: int | None = None, attempt: int = 1) -> BuildRow:
    b = builds.create(s, BuildCreate(config=""), CONFIG, 0.0, requeue_budget=1)
    b.status, b.attempt, b.worker_name, b.worker_epoch, b.job_build_id = status, attempt, "w", epoch, job_build_id
    return b


def test_a_steps_outputs_stay_while_its_job_build_runs_and_go_once_it_ended(tx):
    epoch = new_boot_epoch()
    with tx() as s:
        registry.register(s, WorkerRegistration(name="w", boot_epoch=epoch), now=0)
        p, _, _ = pipelines.set_config(s, "main", "p", load_pipeline_config(
            "jobs: [{name: j, plan: [{task: t, config: {platform: linux, rootfs_uri: /, run: {path: 'true'}}}]}]",
            "pipeline.yml").data, "", 0)
        jb = pipelines.trigger(s, p, pipelines.get_job(s, p, "j"), 0)
        jb.status = "started"
        step = add_build(s, epoch, "succeeded", jb.id, attempt=2)
        failed = add_build(s, epoch, "failed", jb.id)
        one_off = add_build(s, epoch, "succeeded")
        ids = step.id, failed.id, one_off.id, jb.id
    step_id, failed_id, one_off_id, jb_id = ids
    report = [*volumes(step_id, 2), *volumes(step_id, 1), *volumes(failed_id, 1), *volumes(one_off_id, 1)]
    with tx() as s:
        destroyed = {o.handle for o in gc.decide(s, "w", ReaperReport(boot_epoch=epoch, objects=report), 1, 3600)}
    kept = {o.handle for o in report} - destroyed
    # the succeeded step's outputs, and the input its output `out` is a COW child of; not its other input,
    # its rootfs, its earlier attempt's volumes, a failed step's or a one-off build's outputs
    assert kept == {f"b{step_id}-a2-output-out", f"b{step_id}-a2-output-res", f"b{step_id}-a2-in-src"}
    with tx() as s:
        pipelines.finish(s.get(JobBuildRow, jb_id), JobBuildStatus.succeeded, 2)
    with tx() as s:
        again = gc.decide(s, "w", ReaperReport(boot_epoch=epoch, objects=report), 3, 3600)
    assert {o.handle for o in again} == {o.handle for o in report}  # the job build ended: nothing is kept
