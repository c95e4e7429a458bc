"""Pipelines running for real: `airside web` (SQLite and PostgreSQL) and `airside worker` processes, plans
with in_parallel, hooks, try and outputs passed between steps; web killed mid-plan and restarted; a worker
killed mid-step; serial and max_in_flight under several triggers.

Tasks use the `process` runtime (rootfs_uri: /): a task can leave marks in a host directory, which is how
these tests count how often each step really ran and how they hold a step running until they release it
(a file the task waits for — the test creates it; no test sleeps)."""

from __future__ import annotations

import json
import signal
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from airside.core import routes
from tests.procs import WebProc, WorkerProc, state_of, wait_for


def sh(script: str, **extra: Any) -> dict[str, Any]:
    return {"platform": "linux", "rootfs_uri": "/", "run": {"path": "sh", "args": ["-c", textwrap.dedent(script)]},
            **extra}


def task(name: str, script: str, **extra: Any) -> dict[str, Any]:
    cfg = {k: extra.pop(k) for k in ("inputs", "outputs") if k in extra}
    return {"task": name, "config": sh(script, **cfg), **extra}


class Api:
    def __init__(self, web: WebProc, pipeline: str = "p") -> None:
        self.web, self.p = web, pipeline

    def call(self, route: routes.Route, json_body: Any = None, **path: str) -> Any:
        with self.web.client() as c:
            return c.call(route, json=json_body, team="main", pipeline=self.p, **path)

    def set(self, config: dict[str, Any]) -> None:
        self.call(routes.SET_PIPELINE, {"config": yaml.safe_dump(config), "filename": "pipeline.yml"})
        self.call(routes.UNPAUSE_PIPELINE)

    def trigger(self, job: str) -> str:
        return self.call(routes.TRIGGER_JOB, job=job)["name"]

    def build(self, job: str, name: str) -> dict[str, Any]:
        return self.call(routes.GET_JOB_BUILD, job=job, build=name)

    def wait(self, job: str, name: str, status: str | tuple[str, ...], timeout: float = 60) -> dict[str, Any]:
        want = (status,) if isinstance(status, str) else status
        last: dict[str, Any] = {}

        def done() -> bool:
            nonlocal last
            last = self.build(job, name)
            return last["status"] in want

        try:
            wait_for(done, timeout, f"{self.p}/{job} #{name} {want}")
        except AssertionError as e:
            raise AssertionError(f"{e} (last: {json.dumps(last)[:1500]})\n{self.web.output()[-3000:]}") from None
        return last

    def step_log(self, build: dict[str, Any], step: str) -> str:
        ids = [s["build_id"] for s in build["steps"] if s["name"] == step and s["build_id"]]
        assert ids, f"no step {step!r} in {build['steps']}"
        with self.web.client() as c:
            return "".join(e["data"] for e in c.events(ids[-1]) if e.get("kind") == "log")


def marks(d: Path, name: str) -> int:
    p = d / name
    return len(p.read_text().splitlines()) if p.exists() else 0


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> str:
    return "" if request.param == "sqlite" else request.getfixturevalue("fresh_postgres_db")


@pytest.fixture
def web(tmp_path: Path, db_url: str):
    w = WebProc(tmp_path, database_url=db_url, heartbeat_ttl=3).start()
    yield w
    w.stop()


@pytest.fixture
def worker(web: WebProc, tmp_path: Path):
    wk = WorkerProc(tmp_path, web, "w1").start()
    wait_for(lambda: state_of(web.client(), "w1") == "running", what="worker running")
    yield wk
    wk.stop()


def test_three_jobs_with_in_parallel_hooks_try_and_an_output_passed_on(web: WebProc, worker: WorkerProc,
                                                                       tmp_path: Path) -> None:
    api = Api(web)
    api.set({"jobs": [
        {"name": "build", "plan": [
            {"in_parallel": {"limit": 2, "steps": [
                task("compile", "echo compiling; echo 'binary v1' > bin/app", outputs=[{"name": "bin"}]),
                task("lint", "echo lint clean"),
            ]}, "on_success": task("announce", "echo both halves done")},
            {"try": task("flaky", "echo flaky says no; exit 7")},
            task("package", "cat bin/app; cp bin/app pkg/app", inputs=[{"name": "bin"}], outputs=[{"name": "pkg"}]),
            task("verify", "test \"$(cat artifact/app)\" = 'binary v1' && echo verified",
                 inputs=[{"name": "artifact"}], input_mapping={"artifact": "pkg"}),
        ], "ensure": task("cleanup", "echo cleaning up")},
        {"name": "unit", "plan": [task("unit", "echo unit ok")]},
        {"name": "deploy", "plan": [task("deploy", "echo deploying; exit 3")],
         "on_failure": task("page", "echo paging on-call")},
    ]})
    names = {job: api.trigger(job) for job in ("build", "unit", "deploy")}
    build = api.wait("build", names["build"], ("succeeded", "failed", "errored", "aborted"))
    assert build["status"] == "succeeded", build
    steps = {s["name"]: s["status"] for s in build["steps"]}
    assert steps == {"compile": "succeeded", "lint": "succeeded", "announce": "succeeded", "flaky": "failed",
                     "package": "succeeded", "verify": "succeeded", "cleanup": "succeeded"}
    assert "binary v1" in api.step_log(build, "package")  # compile's output reached package as an input
    assert "verified" in api.step_log(build, "verify")  # package's output, mapped to another name
    assert "flaky says no" in api.step_log(build, "flaky")
    assert api.wait("unit", names["unit"], "succeeded")["status"] == "succeeded"
    deploy = api.wait("deploy", names["deploy"], ("failed", "errored"))
    assert deploy["status"] == "failed" and "exit code 3" in deploy["reason"]
    assert "paging on-call" in api.step_log(deploy, "page")


def test_web_killed_mid_plan_resumes_without_rerunning_finished_steps(web: WebProc, worker: WorkerProc,
                                                                      tmp_path: Path) -> None:
    d = tmp_path / "marks"
    d.mkdir()
    api = Api(web)
    api.set({"jobs": [{"name": "j", "plan": [
        task("first", f"echo x >> {d}/first"),
        task("held", f"echo x >> {d}/held; while [ ! -e {d}/release ]; do sleep 0.05; done; echo released"),
        task("last", f"echo x >> {d}/last"),
    ]}]})
    name = api.trigger("j")
    wait_for(lambda: marks(d, "held") == 1, 60, "the held step running")
    web.signal(signal.SIGKILL)
    web.wait()
    web.start()
    (d / "release").touch()
    build = api.wait("j", name, ("succeeded", "failed", "errored", "aborted"), timeout=90)
    assert build["status"] == "succeeded", build
    assert (marks(d, "first"), marks(d, "held"), marks(d, "last")) == (1, 1, 1), "each step ran exactly once"
    assert "released" in api.step_log(build, "held")  # the running step re-attached: its log kept coming


def test_a_lost_worker_requeues_only_the_step_it_ran(web: WebProc, tmp_path: Path) -> None:
    d = tmp_path / "marks"
    d.mkdir()
    w1 = WorkerProc(tmp_path, web, "w1").start()
    wait_for(lambda: state_of(web.client(), "w1") == "running", what="w1 running")
    api = Api(web)
    api.set({"jobs": [{"name": "j", "plan": [
        task("first", f"echo x >> {d}/first"),
        task("held", f"echo x >> {d}/held; while [ ! -e {d}/release ]; do sleep 0.05; done"),
    ]}]})
    name = api.trigger("j")
    wait_for(lambda: marks(d, "held") == 1, 60, "the held step running on w1")
    w1.signal(signal.SIGKILL)
    w1.wait()
    (d / "release").touch()
    w2 = WorkerProc(tmp_path, web, "w2").start()
    try:
        build = api.wait("j", name, ("succeeded", "failed", "errored", "aborted"), timeout=90)
        assert build["status"] == "succeeded", build
        assert marks(d, "first") == 1, "the finished step was not rerun"
        assert marks(d, "held") == 2, "the lost step ran again (on w2)"
        with web.client() as c:
            held = [s for s in build["steps"] if s["name"] == "held"][0]
            b = c.build(held["build_id"])
        assert b.requeues == 1 and b.worker_name == "w2"
    finally:
        w2.stop()


def test_serial_and_max_in_flight_under_several_triggers(web: WebProc, worker: WorkerProc, tmp_path: Path) -> None:
    d = tmp_path / "marks"
    d.mkdir()
    hold = f"while [ ! -e {d}/release ]; do sleep 0.05; done"
    api = Api(web)
    api.set({"jobs": [
        {"name": "serial", "serial": True, "plan": [task("s", f"echo x >> {d}/serial; {hold}")]},
        {"name": "two", "max_in_flight": 2, "plan": [task("t", f"echo x >> {d}/two; {hold}")]},
    ]})
    serial = [api.trigger("serial") for _ in range(3)]
    two = [api.trigger("two") for _ in range(3)]
    wait_for(lambda: marks(d, "serial") == 1 and marks(d, "two") == 2, 60, "the first builds running")
    statuses = [api.build("serial", n)["status"] for n in serial], [api.build("two", n)["status"] for n in two]
    assert statuses == (["started", "pending", "pending"], ["started", "started", "pending"])
    (d / "release").touch()
    done = [api.wait("serial", n, "succeeded") for n in serial] + [api.wait("two", n, "succeeded") for n in two]
    starts = [b["started_at"] for b in done[:3]]
    ends = [b["finished_at"] for b in done[:3]]
    assert starts[1] >= ends[0] and starts[2] >= ends[1], "serial builds ran one after another, in order"
    assert (marks(d, "serial"), marks(d, "two")) == (3, 3)


def test_abort_ends_every_running_step(web: WebProc, worker: WorkerProc, tmp_path: Path) -> None:
    d = tmp_path / "marks"
    d.mkdir()
    api = Api(web)
    api.set({"jobs": [{"name": "j", "plan": [{"in_parallel": [
        task("a", f"echo $$ > {d}/a.pid; exec sleep 600"),
        task("b", f"echo $$ > {d}/b.pid; exec sleep 600"),
    ]}], "ensure": task("cleanup", f"echo x >> {d}/cleanup")}]})
    name = api.trigger("j")
    wait_for(lambda: (d / "a.pid").exists() and (d / "b.pid").exists(), 60, "both steps running")
    pids = [int((d / f).read_text()) for f in ("a.pid", "b.pid")]
    api.call(routes.ABORT_JOB_BUILD, job="j", build=name)
    build = api.wait("j", name, ("aborted", "succeeded", "failed", "errored"), timeout=60)
    assert build["status"] == "aborted"
    assert {s["name"]: s["status"] for s in build["steps"]} == {"a": "aborted", "b": "aborted", "cleanup": "succeeded"}
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower(), \
            f"task process {pid} still runs after abort"


def test_execute_takes_inputs_from_a_jobs_latest_build(web: WebProc, worker: WorkerProc, tmp_path: Path) -> None:
    from tests.procs import run_cli

    api = Api(web)
    api.set({"jobs": [{"name": "build", "plan": [
        task("compile", "echo 'built by the pipeline' > bin/app", outputs=[{"name": "bin"}])]}]})
    task_file = tmp_path / "use.yml"
    task_file.write_text(yaml.safe_dump(sh("cat bin/app; cat src/local", inputs=[{"name": "bin"}, {"name": "src"}])))
    src = tmp_path / "src"
    src.mkdir()
    (src / "local").write_text("uploaded from here\n")
    before = run_cli(web, "execute", "-c", str(task_file), "-j", "p/build", "-i", f"src={src}")
    assert before.returncode != 0 and "no succeeded build" in before.stderr, before.stderr
    api.wait("build", api.trigger("build"), "succeeded")
    api.set({"jobs": [{"name": "build", "plan": [
        task("compile", "echo 'a broken build' > bin/app; exit 1", outputs=[{"name": "bin"}])]}]})
    api.wait("build", api.trigger("build"), "failed")  # the latest build failed: its artifacts are not used
    r = run_cli(web, "execute", "-c", str(task_file), "-j", "p/build", "-i", f"src={src}")
    assert r.returncode == 0, r.stderr
    assert "built by the pipeline" in r.stdout and "uploaded from here" in r.stdout
    other = tmp_path / "other.yml"
    other.write_text(yaml.safe_dump(sh("true", inputs=[{"name": "nope"}])))
    r = run_cli(web, "execute", "-c", str(other), "-j", "p/build")
    assert r.returncode != 0 and "no artifact named nope" in r.stderr and "it made: bin" in r.stderr, r.stderr


@pytest.mark.root
def test_a_step_runs_in_an_image_an_earlier_step_made(tmp_path: Path, busybox_image: Path) -> None:
    """`image: ARTIFACT` (the rootfs/ + metadata.json a registry-image get produces) on an oci worker."""
    web = WebProc(tmp_path, heartbeat_ttl=3).start()
    wk = WorkerProc(tmp_path, web, "oci1", worker_runtime="oci").start()
    try:
        wait_for(lambda: state_of(web.client(), "oci1") == "running", what="worker running")
        api = Api(web)
        make = {"task": "make-image", "config": {
            "platform": "linux", "rootfs_uri": str(busybox_image), "outputs": [{"name": "img"}],
            "run": {"path": "sh", "args": ["-c", "mkdir img/rootfs && for d in bin etc lib usr sbin; do "
                                                 "[ -e /$d ] && cp -a /$d img/rootfs/; done; "
                                                 "echo made-here > img/rootfs/marker; "
                                                 "echo '{\"env\": [\"MARK=from-the-artifact\"]}' > img/metadata.json"]}}}
        use = {"task": "use-image", "image": "img", "config": {
            "platform": "linux", "run": {"path": "sh", "args": ["-c", "cat /marker; echo $MARK"]}}}
        api.set({"jobs": [{"name": "j", "plan": [make, use]}]})
        build = api.wait("j", api.trigger("j"), ("succeeded", "failed", "errored"), timeout=120)
        assert build["status"] == "succeeded", build
        log = api.step_log(build, "use-image")
        assert "made-here" in log and "from-the-artifact" in log
    finally:
        wk.stop()
        web.stop()
