"""Walking job builds' plans (airside.web.plans) on a real SQLite database and artifact store, with a
controlled clock. A registered worker record takes the step builds; the tests play the worker's part
through airside.web.builds (phase, outputs written into the store, finish) — the same calls the worker
API makes. tests/integration/test_pipelines_run.py runs the same plans with real worker processes."""

from __future__ import annotations

import base64
import io
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import select

from airside.config import Settings
from airside.core.schemas import (
    BuildStatus,
    FinishReport,
    LogBatch,
    LogChunkIn,
    Phase,
    WorkerRegistration,
    new_boot_epoch,
)
from airside.pipeline import load_pipeline_config
from airside.web import builds, pipelines, plans, registry
from airside.web.artifacts import ArtifactStore
from airside.web.db import BuildRow, JobBuildRow

TASK = {"platform": "linux", "image_resource": {"type": "registry-image", "source": {"repository": "busybox"}},
        "run": {"path": "true"}}


@dataclass
class Host:
    """What the walker uses of web: settings and the artifact store (real, on disk)."""

    artifacts: ArtifactStore
    settings: Settings = field(default_factory=lambda: Settings(runtime="workers"))
    lags: list[float] = field(default_factory=list)

    def observe_check_lag(self, seconds: float) -> None:
        self.lags.append(seconds)


@pytest.fixture
def env(tx, tmp_path):
    host = Host(ArtifactStore(tmp_path / "artifacts"))
    with tx() as s:
        registry.register(s, WorkerRegistration(name="w", boot_epoch=new_boot_epoch(), max_tasks=100), now=0)
    return Env(tx, host)


def tar_of(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"./{name}")
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def untar(path: Path) -> dict[str, str]:
    with tarfile.open(path) as t:
        return {m.name.removeprefix("./"): t.extractfile(m).read().decode() for m in t if m.isfile()}


@dataclass
class Env:
    tx: object
    host: Host
    now: float = 10.0

    def set(self, text: str, name: str = "p", paused: bool = False) -> None:
        loaded = load_pipeline_config(text, "pipeline.yml")
        with self.tx() as s:
            row, _, _ = pipelines.set_config(s, "main", name, loaded.data, text, self.now)
            row.paused = paused

    def trigger(self, job: str, pipeline: str = "p") -> str:
        with self.tx() as s:
            p = pipelines.get(s, "main", pipeline)
            return pipelines.trigger(s, p, pipelines.get_job(s, p, job), self.now).name

    def tick(self, advance: float = 1.0) -> None:
        self.now += advance
        with self.tx() as s:
            plans.tick(s, self.now, self.host)

    def job_build(self, job: str, name: str, pipeline: str = "p") -> JobBuildRow:
        with self.tx() as s:
            p = pipelines.get(s, "main", pipeline)
            return pipelines.get_build(s, pipelines.get_job(s, p, job), name)

    def job_build_count(self, job: str, pipeline: str = "p") -> int:
        with self.tx() as s:
            p = pipelines.get(s, "main", pipeline)
            return len(pipelines.job_builds(s, pipelines.get_job(s, p, job)))

    def status(self, job: str, name: str = "1") -> str:
        return self.job_build(job, name).status

    def steps(self, job: str, name: str = "1") -> list[BuildRow]:
        with self.tx() as s:
            return list(pipelines.step_builds(s, self.job_build(job, name)))

    def step(self, job: str, step: str, name: str = "1") -> BuildRow:
        found = [b for b in self.steps(job, name) if b.step_name == step]
        assert found, f"no step build for {step!r}: {[b.step_name for b in self.steps(job, name)]}"
        return found[-1]

    def run(self, build_id: int, status: str = "succeeded", outputs: dict[str, dict[str, str]] | None = None,
            exit_code: int | None = None, stdout: str = "", stderr: str = "") -> None:
        """The worker's part: placed, started, logs sent, outputs uploaded, finished."""
        with self.tx() as s:
            builds.schedule(s, self.now, ttl=1e9, strategy="fewest-build-containers")
            b = builds.get(s, build_id)
            assert b.status == BuildStatus.placed, f"build {build_id} is {b.status}"
            worker = b.worker_name
            builds.phase(s, build_id, worker, b.attempt, Phase.started, self.now)
            attempt = b.attempt
            chunks = [LogChunkIn(stream=stream, offset=0, data=base64.b64encode(text.encode()).decode())
                      for stream, text in (("stdout", stdout), ("stderr", stderr)) if text]
            if chunks:
                builds.append_logs(s, build_id, worker, LogBatch(attempt=attempt, chunks=chunks), self.now)
        for name, files in (outputs or {}).items():
            self.host.artifacts.write_iter(build_id, "outputs", name, "identity", [tar_of(files)], 1 << 30)
        with self.tx() as s:
            builds.finish(s, build_id, worker, FinishReport(
                attempt=attempt, status=BuildStatus(status), outputs=list(outputs or {}),
                exit_code=exit_code if exit_code is not None else (1 if status == "failed" else 0)), self.now)

    def finish_step(self, job: str, step: str, status: str = "succeeded", **kw) -> None:
        self.tick()
        self.run(self.step(job, step).id, status, **kw)
        self.tick()


def task(name: str, **extra) -> dict:
    return {"task": name, "config": {**TASK, **extra.pop("config", {})}, **extra}


def pipeline(*jobs: dict) -> str:
    import yaml

    return yaml.safe_dump({"jobs": list(jobs)})


def test_an_output_flows_to_the_next_step_and_the_build_succeeds(env):
    env.set(pipeline({"name": "j", "plan": [
        task("make", config={"outputs": [{"name": "result"}]}, output_mapping={"result": "out"}),
        task("use", config={"inputs": [{"name": "built"}]}, input_mapping={"built": "out"}),
    ]}))
    env.trigger("j")
    env.tick()
    assert env.status("j") == "started"
    assert [b.step_name for b in env.steps("j")] == ["make"]  # `use` waits for `make`
    env.finish_step("j", "make", outputs={"result": {"hello.txt": "hi"}})
    use = env.step("j", "use")
    assert use.inputs == ["built"]
    # where the input came from: make's build, its attempt, and the output's name in make (not the mapped name)
    assert use.input_sources == {"built": {"build": env.step("j", "make").id, "attempt": 1, "output": "result"}}
    assert untar(env.host.artifacts.find(use.id, "inputs", "built")[0]) == {"hello.txt": "hi"}
    env.run(use.id)
    env.tick()
    assert env.status("j") == "succeeded"


def test_a_failed_step_stops_the_plan_and_fails_the_build_with_its_reason(env):
    env.set(pipeline({"name": "j", "plan": [task("a"), task("b")]}))
    env.trigger("j")
    env.finish_step("j", "a", "failed", exit_code=3)
    assert [b.step_name for b in env.steps("j")] == ["a"]
    jb = env.job_build("j", "1")
    assert jb.status == "failed" and "exit code 3" in jb.reason


def test_a_missing_input_errors_the_step_naming_it(env):
    env.set(pipeline({"name": "j", "plan": [task("use", config={"inputs": [{"name": "src"}, {"name": "opt", "optional": True}]})]}))
    env.trigger("j")
    env.tick()
    jb = env.job_build("j", "1")
    assert jb.status == "errored" and "missing inputs: src" in jb.reason and "opt" not in jb.reason
    assert env.steps("j") == []


def test_hooks_on_failure_and_ensure_run_on_success_does_not(env):
    env.set(pipeline({"name": "j", "plan": [task("a", on_success=task("yay"), on_failure=task("boo"),
                                                 ensure=task("always"))]}))
    env.trigger("j")
    env.finish_step("j", "a", "failed")
    env.finish_step("j", "boo")
    env.finish_step("j", "always")
    assert sorted(b.step_name for b in env.steps("j")) == ["a", "always", "boo"]
    assert env.status("j") == "failed"  # on_failure's success does not turn the failure around


def test_a_failing_ensure_fails_a_successful_build_and_job_hooks_run(env):
    env.set(pipeline({"name": "j", "plan": [task("a", ensure=task("cleanup"))], "on_success": task("job-ok"),
                      "on_failure": task("job-failed")}))
    env.trigger("j")
    env.finish_step("j", "a")
    env.finish_step("j", "cleanup", "failed")
    env.finish_step("j", "job-failed")
    assert env.status("j") == "failed"
    assert "job-ok" not in [b.step_name for b in env.steps("j")]


def test_try_swallows_a_failure(env):
    env.set(pipeline({"name": "j", "plan": [{"try": task("flaky")}, task("next")]}))
    env.trigger("j")
    env.finish_step("j", "flaky", "failed")
    env.finish_step("j", "next")
    assert env.status("j") == "succeeded"


def test_attempts_retry_failures_up_to_the_count(env):
    env.set(pipeline({"name": "j", "plan": [task("flaky", attempts=3)]}))
    env.trigger("j")
    env.finish_step("j", "flaky", "failed")
    env.finish_step("j", "flaky", "errored")
    assert env.status("j") == "started"
    env.finish_step("j", "flaky")
    assert env.status("j") == "succeeded"
    assert [b.step_path for b in env.steps("j")] == [f"plan/0/attempt/{k}" for k in (1, 2, 3)]


def test_attempts_give_up_after_the_last(env):
    env.set(pipeline({"name": "j", "plan": [task("flaky", attempts=2)]}))
    env.trigger("j")
    env.finish_step("j", "flaky", "failed")
    env.finish_step("j", "flaky", "failed")
    assert env.status("j") == "failed" and len(env.steps("j")) == 2


def test_in_parallel_limit_and_fail_fast(env):
    env.set(pipeline({"name": "j", "plan": [{"in_parallel": {"limit": 2, "fail_fast": True, "steps": [
        task("a"), task("b"), task("c")]}}]}))
    env.trigger("j")
    env.tick()
    assert sorted(b.step_name for b in env.steps("j")) == ["a", "b"]  # c waits for a free slot
    env.run(env.step("j", "a").id, "failed")
    env.tick()
    env.tick()
    b = env.step("j", "b")  # placed on the worker along with a (run() places every pending build)
    assert b.status == "placed" and b.abort_requested, "fail_fast aborts the running sibling"
    assert "c" not in [x.step_name for x in env.steps("j")], "fail_fast starts nothing new"
    assert env.status("j") == "started"  # until b has stopped
    with env.tx() as s:
        builds.finish(s, b.id, "w", FinishReport(attempt=1, status=BuildStatus.aborted), env.now)
    env.tick()
    assert env.status("j") == "failed"


def test_in_parallel_without_limit_runs_all_and_waits_for_all(env):
    env.set(pipeline({"name": "j", "plan": [{"in_parallel": [task("a", config={"outputs": [{"name": "x"}]}),
                                                              task("b")]},
                                             task("after", config={"inputs": [{"name": "x"}]})]}))
    env.trigger("j")
    env.tick()
    assert sorted(b.step_name for b in env.steps("j")) == ["a", "b"]
    env.run(env.step("j", "a").id, outputs={"x": {"f": "1"}})
    env.tick()
    assert "after" not in [b.step_name for b in env.steps("j")]
    env.run(env.step("j", "b").id)
    env.tick()
    env.run(env.step("j", "after").id)
    env.tick()
    assert env.status("j") == "succeeded"


def test_timeout_aborts_the_running_step_and_fails_the_build(env):
    env.set(pipeline({"name": "j", "plan": [task("slow", timeout="30s")]}))
    env.trigger("j")
    env.tick()
    slow = env.step("j", "slow")
    env.tick(advance=10)
    assert not env.step("j", "slow").abort_requested
    env.tick(advance=25)
    with env.tx() as s:
        assert builds.get(s, slow.id).status == "aborted"  # never placed: aborted at once
    env.tick()
    jb = env.job_build("j", "1")
    assert jb.status == "failed" and "timeout exceeded (30s)" in jb.reason


def test_abort_ends_running_steps_and_still_runs_ensure(env):
    env.set(pipeline({"name": "j", "plan": [task("long", ensure=task("cleanup")), task("never")]}))
    env.trigger("j")
    env.tick()
    long = env.step("j", "long")
    with env.tx() as s:
        builds.schedule(s, env.now, ttl=1e9, strategy="fewest-build-containers")
        builds.phase(s, long.id, "w", 1, Phase.started, env.now)
        pipelines.abort(s, s.get(JobBuildRow, long.job_build_id), env.now)
    env.tick()
    assert env.step("j", "long").abort_requested
    with env.tx() as s:
        builds.finish(s, long.id, "w", FinishReport(attempt=1, status=BuildStatus.aborted), env.now)
    env.tick()
    env.run(env.step("j", "cleanup").id)
    env.tick()
    assert env.status("j") == "aborted"
    assert "never" not in [b.step_name for b in env.steps("j")]


def test_serial_jobs_run_one_build_at_a_time_in_order(env):
    env.set(pipeline({"name": "j", "serial": True, "plan": [task("a")]}))
    for _ in range(3):
        env.trigger("j")
    env.tick()
    assert [env.status("j", n) for n in "123"] == ["started", "pending", "pending"]
    env.finish_step("j", "a")
    assert [env.status("j", n) for n in "123"] == ["succeeded", "started", "pending"]


def test_max_in_flight_and_serial_groups(env):
    env.set(pipeline({"name": "m", "max_in_flight": 2, "plan": [task("a")]},
                     {"name": "g1", "serial_groups": ["deploy"], "plan": [task("a")]},
                     {"name": "g2", "serial_groups": ["deploy"], "plan": [task("a")]}))
    for _ in range(3):
        env.trigger("m")
    env.trigger("g1")
    env.trigger("g2")
    env.tick()
    assert [env.status("m", n) for n in "123"] == ["started", "started", "pending"]
    assert (env.status("g1"), env.status("g2")) == ("started", "pending")  # one at a time across the group


def test_paused_pipeline_and_job_keep_builds_pending(env):
    env.set(pipeline({"name": "j", "plan": [task("a")]}), paused=True)
    env.trigger("j")
    env.tick()
    assert env.status("j") == "pending"
    with env.tx() as s:
        p = pipelines.get(s, "main", "p")
        pipelines.set_paused(s, p, False, env.now)
        pipelines.set_job_paused(s, pipelines.get_job(s, p, "j"), True)
    env.tick()
    assert env.status("j") == "pending"
    with env.tx() as s:
        p = pipelines.get(s, "main", "p")
        pipelines.set_job_paused(s, pipelines.get_job(s, p, "j"), False)
    env.tick()
    assert env.status("j") == "started"


def test_load_var_and_across_feed_params(env):
    env.set(pipeline({"name": "j", "plan": [
        task("version", config={"outputs": [{"name": "v"}]}),
        {"load_var": "ver", "file": "v/number"},
        task("use", params={"VERSION": "((.:ver))", "GO": "((.:go))"},
             across=[{"var": "go", "values": ["1.22", "1.23"], "max_in_flight": "all"}]),
    ]}))
    env.trigger("j")
    env.finish_step("j", "version", outputs={"v": {"number": "4.2.0\n"}})
    uses = [b for b in env.steps("j") if b.step_name == "use"]
    assert sorted(b.config["params"]["GO"] for b in uses) == ["1.22", "1.23"]
    assert {b.config["params"]["VERSION"] for b in uses} == {"4.2.0"}
    for b in uses:
        env.run(b.id)
    env.tick()
    assert env.status("j") == "succeeded"


def test_an_undefined_var_errors_the_step_naming_it(env):
    env.set(pipeline({"name": "j", "plan": [task("a", params={"TOKEN": "((vault:secret))"})]}))
    env.trigger("j")
    env.tick()
    jb = env.job_build("j", "1")
    assert jb.status == "errored" and "((vault:secret))" in jb.reason


def test_task_file_from_an_artifact_with_vars(env):
    env.set(pipeline({"name": "j", "plan": [
        task("checkout", config={"outputs": [{"name": "repo"}]}),
        {"task": "unit", "file": "repo/ci/unit.yml", "vars": {"cmd": "make"}},
    ]}))
    env.trigger("j")
    env.finish_step("j", "checkout", outputs={"repo": {"ci/unit.yml": (
        "platform: linux\nimage_resource: {type: registry-image, source: {repository: busybox}}\n"
        "inputs: [{name: repo}]\nrun: {path: ((cmd)), args: [test]}\n")}})
    unit = env.step("j", "unit")
    assert (unit.config["run"]["path"], unit.config["run"]["args"]) == ("make", ["test"])
    assert unit.inputs == ["repo"]


def test_a_config_change_does_not_change_a_running_build_and_renames_keep_history(env):
    env.set(pipeline({"name": "old", "plan": [task("a")]}))
    env.trigger("old")
    env.tick()
    env.set(pipeline({"name": "new", "old_name": "old", "plan": [task("b")]}))
    env.run(env.steps("new")[0].id)
    env.tick()
    assert env.status("new") == "succeeded"  # build #1 ran the plan it was created with (task a)
    assert env.trigger("new") == "2"


def test_step_builds_are_placed_by_the_usual_scheduler(env, tx):
    env.set(pipeline({"name": "j", "plan": [task("a", tags=["gpu"])]}))
    env.trigger("j")
    env.tick()
    with tx() as s:
        b = s.scalar(select(BuildRow))
        assert b.tags == ["gpu"] and b.status == "pending"
        assert builds.schedule(s, env.now, ttl=1e9, strategy="fewest-build-containers") == []  # w has no gpu tag


def test_a_failing_on_success_hook_fails_the_step_and_triggers_on_failure(env):
    env.set(pipeline({"name": "j", "plan": [task("a", on_success=task("notify"), on_failure=task("alarm"))]}))
    env.trigger("j")
    env.finish_step("j", "a")
    env.finish_step("j", "notify", "failed")
    env.finish_step("j", "alarm")
    assert env.status("j") == "failed"
    assert [b.step_name for b in env.steps("j")] == ["a", "notify", "alarm"]


def test_a_bad_task_file_errors_the_step_naming_file_line_and_field(env):
    env.set(pipeline({"name": "j", "plan": [
        task("checkout", config={"outputs": [{"name": "repo"}]}),
        {"task": "unit", "file": "repo/ci/unit.yml"},
    ]}))
    env.trigger("j")
    env.finish_step("j", "checkout", outputs={"repo": {"ci/unit.yml": (
        "platform: linux\nrootfs_uri: /\nrun:\n  path: sh\n  argz: [x]\n")}})
    jb = env.job_build("j", "1")
    assert jb.status == "errored" and "repo/ci/unit.yml:5" in jb.reason and "argz" in jb.reason, jb.reason


def test_image_from_an_artifact_is_linked_as_the_builds_image_input(env):
    env.set(pipeline({"name": "j", "plan": [
        task("img", config={"outputs": [{"name": "img"}]}),
        {"task": "in-it", "image": "img", "config": {"platform": "linux", "run": {"path": "true"}}},
        {"task": "no-such", "image": "nope", "config": {"platform": "linux", "run": {"path": "true"}}},
    ]}))
    env.trigger("j")
    env.finish_step("j", "img", outputs={"img": {"rootfs/marker": "x", "metadata.json": "{}"}})
    b = env.step("j", "in-it")
    assert b.image_input == "_image" and b.inputs == []
    assert "rootfs/marker" in untar(env.host.artifacts.find(b.id, "inputs", "_image")[0])
    env.run(b.id)
    env.tick()
    jb = env.job_build("j", "1")
    assert jb.status == "errored" and "image: 'nope'" in jb.reason
