"""Resources through the plan walker (airside.web.resources + plans) on a real SQLite database: checks as
builds with the request on stdin and the versions on stdout, triggers, get/put with the implicit get,
passed, every, custom resource types, and scripts that answer badly. The tests play the worker's part
(builds.append_logs with the script's stdout/stderr, finish) as in tests/unit/test_plans.py."""

from __future__ import annotations

import json

import pytest
import yaml
from sqlalchemy import select

from airside.core.schemas import WorkerRegistration, new_boot_epoch
from airside.web import pipelines, registry, resources
from airside.web.db import BuildRow, ResourceConfigRow, ResourceVersionRow
from airside.web.errors import NotFound
from tests.unit.test_plans import Env, env, task  # noqa: F401 - env is the fixture

MOCK = {"name": "src", "type": "mock", "source": {"initial_version": "1"}, "check_every": "10s"}


@pytest.fixture(params=["sqlite", "postgres"])
def tx(request: pytest.FixtureRequest, tmp_path):
    """The walker's database, on SQLite and on PostgreSQL (row locks with SKIP LOCKED are real there)."""
    from airside.web import db

    url = (f"sqlite:///{tmp_path}/unit.db" if request.param == "sqlite"
           else request.getfixturevalue("fresh_postgres_db").replace("postgresql://", "postgresql+psycopg://"))
    engine = db.make_engine(url)
    db.migrate(engine)
    factory = db.sessions(engine)
    yield lambda: db.transaction(factory)
    engine.dispose()


@pytest.fixture
def renv(env: Env) -> Env:  # noqa: F811
    """The walker's env plus a worker that offers the `mock` type (resource builds are placed only there)."""
    with env.tx() as s:
        registry.register(s, WorkerRegistration(name="rw", boot_epoch=new_boot_epoch(), max_tasks=100,
                                                resource_types=[{"type": "mock", "image": "/types/mock"}]), now=0)
    return env


def config(*jobs: dict, resources_: list[dict] | None = None, types: list[dict] | None = None) -> str:
    data: dict = {"resources": resources_ if resources_ is not None else [MOCK], "jobs": list(jobs)}
    if types:
        data["resource_types"] = types
    return yaml.safe_dump(data)


def builds_of(e: Env, where=None) -> list[BuildRow]:
    with e.tx() as s:
        q = select(BuildRow).order_by(BuildRow.id)
        return list(s.scalars(q.where(where) if where is not None else q).all())


def checks(e: Env) -> list[BuildRow]:
    return [b for b in builds_of(e) if b.step_name == "" and b.config["run"]["path"] == "/opt/resource/check"]


def versions(e: Env) -> list[dict]:
    with e.tx() as s:
        return [v.version for v in s.scalars(select(ResourceVersionRow).order_by(ResourceVersionRow.check_order))]


def answer_check(e: Env, found: list[dict]) -> None:
    e.tick()
    pending = [b for b in checks(e) if b.status == "pending"]
    assert len(pending) == 1, [(b.id, b.status) for b in checks(e)]
    e.run(pending[0].id, stdout=json.dumps(found), stderr="checking\n")
    e.tick()


def test_a_check_runs_the_script_with_source_and_version_and_stores_versions_in_order(renv: Env) -> None:
    renv.set(config({"name": "j", "plan": [{"get": "src"}]}))
    renv.tick()
    first = checks(renv)[0]
    assert first.resource_type == "mock" and json.loads(first.stdin) == {"source": {"initial_version": "1"},
                                                                         "version": None}
    renv.run(first.id, stdout='[{"v": "1"}, {"v": "2"}]')
    renv.tick()
    assert versions(renv) == [{"v": "1"}, {"v": "2"}]
    renv.tick(advance=5)
    assert len(checks(renv)) == 1, "not due before check_every"
    renv.tick(advance=6)
    second = checks(renv)[-1]
    assert len(checks(renv)) == 2 and json.loads(second.stdin)["version"] == {"v": "2"}  # from the latest


def test_a_failed_or_malformed_check_keeps_the_error_and_backs_off(renv: Env) -> None:
    renv.set(config({"name": "j", "plan": [{"get": "src"}]}))
    renv.tick()
    renv.run(checks(renv)[0].id, stdout="not json at all", stderr="something odd happened\n")
    renv.tick()
    with renv.tx() as s:
        cfg = s.scalar(select(ResourceConfigRow))
        assert "not JSON" in cfg.check_error and "something odd happened" in cfg.check_error
        assert cfg.next_check_at - renv.now == pytest.approx(20, abs=1.5)  # check_every 10s × 2¹
    assert versions(renv) == []
    renv.tick(advance=21)
    renv.run(checks(renv)[-1].id, "failed", stderr="auth failed: bad key\n")
    renv.tick()
    with renv.tx() as s:
        cfg = s.scalar(select(ResourceConfigRow))
        assert "check failed (exit code 1): auth failed: bad key" in cfg.check_error and cfg.failures == 2


def test_identical_resources_share_one_check(renv: Env) -> None:
    renv.set(config({"name": "j", "plan": [{"get": "src"}]}), name="a")
    renv.now += 5
    renv.set(config({"name": "j", "plan": [{"get": "src"}]}), name="b")
    renv.tick()
    assert len(checks(renv)) == 1


def test_trigger_get_task_and_no_second_build_for_the_same_version(renv: Env) -> None:
    renv.set(config({"name": "j", "plan": [{"get": "src", "trigger": True, "params": {"p": "1"}},
                                           task("use", config={"inputs": [{"name": "src"}]})]}))
    answer_check(renv, [{"v": "1"}])
    jb = renv.job_build("j", "1")
    assert jb.created_by == "resource src"
    renv.tick()
    get = renv.step("j", "src")
    assert json.loads(get.stdin) == {"source": {"initial_version": "1"}, "version": {"v": "1"}, "params": {"p": "1"}}
    assert get.config["outputs"] == [{"name": "src", "path": "/tmp/build/get"}]
    assert get.config["params"]["BUILD_JOB_NAME"] == "j" and get.config["params"]["BUILD_NAME"] == "1"
    renv.run(get.id, stdout='{"version": {"v": "1"}, "metadata": [{"name": "m", "value": "x"}]}',
             outputs={"src": {"file": "content"}})
    renv.tick()
    use = renv.step("j", "use")
    assert use.inputs == ["src"]
    renv.run(use.id)
    renv.tick(advance=11)
    assert renv.status("j") == "succeeded"
    with renv.tx() as s:
        p = pipelines.get(s, "main", "p")
        j = pipelines.get_job(s, p, "j")
        view = pipelines.build_view(s, p, j, pipelines.get_build(s, j, "1"))
    assert [(st.name, st.kind, st.status) for st in view.steps] == [("src", "get", "succeeded"),
                                                                    ("use", "task", "succeeded")]
    with pytest.raises(NotFound):
        renv.job_build("j", "2")  # the same version does not trigger again
    answer_check(renv, [{"v": "2"}])
    assert renv.job_build("j", "2").created_by == "resource src"


def test_passed_offers_only_versions_that_went_through_the_upstream_job(renv: Env) -> None:
    renv.set(config({"name": "up", "plan": [{"get": "src"}]},
                    {"name": "down", "plan": [{"get": "src", "passed": ["up"], "trigger": True}]}))
    answer_check(renv, [{"v": "1"}, {"v": "2"}])
    renv.trigger("up")
    renv.tick()
    up_get = renv.step("up", "src")
    assert json.loads(up_get.stdin)["version"] == {"v": "2"}
    assert renv.job_build_count("down") == 0  # v2 has not passed `up` yet: nothing triggers
    renv.run(up_get.id, stdout='{"version": {"v": "2"}}', outputs={"src": {"f": "2"}})
    renv.tick()
    renv.tick()
    down = renv.step("down", "src")
    assert json.loads(down.stdin)["version"] == {"v": "2"}


def test_put_pushes_then_gets_what_it_pushed(renv: Env) -> None:
    renv.set(config({"name": "j", "plan": [task("make", config={"outputs": [{"name": "out"}]}),
                                           {"put": "src", "params": {"file": "out/v"}, "get_params": {"g": "1"}}]}))
    renv.trigger("j")
    renv.finish_step("j", "make", outputs={"out": {"v": "9"}})
    put = [b for b in renv.steps("j") if b.config["run"]["path"] == "/opt/resource/out"][0]
    assert json.loads(put.stdin) == {"source": {"initial_version": "1"}, "params": {"file": "out/v"}}
    assert put.inputs == ["out"] and [(i["name"], i["path"]) for i in put.config["inputs"]] == [("out", "/tmp/build/put/out")]
    renv.run(put.id, stdout='{"version": {"v": "9"}}')
    renv.tick()
    get = [b for b in renv.steps("j") if b.config["run"]["path"] == "/opt/resource/in"][0]
    assert json.loads(get.stdin) == {"source": {"initial_version": "1"}, "version": {"v": "9"}, "params": {"g": "1"}}
    renv.run(get.id, stdout='{"version": {"v": "9"}}', outputs={"src": {"v": "9"}})
    renv.tick()
    assert renv.status("j") == "succeeded" and {"v": "9"} in versions(renv)


def test_no_get_skips_the_implicit_get(renv: Env) -> None:
    renv.set(config({"name": "j", "plan": [{"put": "src", "no_get": True}]}))
    renv.trigger("j")
    renv.tick()
    put = renv.steps("j")[0]
    renv.run(put.id, stdout='{"version": {"v": "3"}}')
    renv.tick()
    assert renv.status("j") == "succeeded" and len(renv.steps("j")) == 1


def test_a_malformed_in_response_errors_the_step_with_the_stderr_tail(renv: Env) -> None:
    renv.set(config({"name": "j", "plan": [{"get": "src"}]}))
    answer_check(renv, [{"v": "1"}])
    renv.trigger("j")
    renv.tick()
    renv.run(renv.step("j", "src").id, stdout='{"versions": []}', stderr="line 1\nfetching failed halfway\n")
    renv.tick()
    jb = renv.job_build("j", "1")
    assert jb.status == "errored" and '"version"' in jb.reason, jb.reason


def test_every_fetches_each_version_in_order(renv: Env) -> None:
    renv.set(config({"name": "j", "plan": [{"get": "src", "version": "every", "trigger": True}]}))
    answer_check(renv, [{"v": "1"}, {"v": "2"}, {"v": "3"}])
    fetched = []
    for n in "123":
        renv.tick()
        get = renv.step("j", "src", name=n)
        fetched.append(json.loads(get.stdin)["version"]["v"])
        renv.run(get.id, stdout=json.dumps({"version": {"v": fetched[-1]}}), outputs={"src": {}})
        renv.tick()
    assert fetched == ["1", "2", "3"]


def test_every_with_builds_in_flight_gives_each_build_its_own_version(renv: Env) -> None:
    renv.set(config({"name": "j", "max_in_flight": 2,
                     "plan": [{"get": "src", "version": "every", "trigger": True}]}))
    answer_check(renv, [{"v": "1"}, {"v": "2"}])
    renv.tick()
    renv.tick()
    got = sorted(json.loads(renv.step("j", "src", name=n).stdin)["version"]["v"] for n in "12")
    assert got == ["1", "2"]


def test_put_inputs_limits_what_it_sees(renv: Env) -> None:
    renv.set(config({"name": "j", "plan": [
        task("a", config={"outputs": [{"name": "a"}, {"name": "b"}]}), {"put": "src", "inputs": ["b"], "no_get": True}]}))
    renv.trigger("j")
    renv.finish_step("j", "a", outputs={"a": {}, "b": {}})
    put = [b for b in renv.steps("j") if b.config["run"]["path"] == "/opt/resource/out"][0]
    assert put.inputs == ["b"]


def test_a_custom_resource_type_runs_in_its_image_on_any_worker(renv: Env) -> None:
    renv.set(config({"name": "j", "plan": [{"get": "src"}]},
                    resources_=[{"name": "src", "type": "my-type", "source": {"x": "y"}}],
                    types=[{"name": "my-type", "type": "registry-image", "source": {"repository": "me/my-type"}}]))
    renv.tick()
    b = checks(renv)[0]
    assert b.resource_type == "" and b.config["image_resource"]["source"] == {"repository": "me/my-type"}


def test_pinned_and_disabled_versions(renv: Env) -> None:
    renv.set(config({"name": "j", "plan": [{"get": "src"}]}))
    answer_check(renv, [{"v": "1"}, {"v": "2"}, {"v": "3"}])
    with renv.tx() as s:
        p = pipelines.get(s, "main", "p")
        r = resources.get_resource(s, p, "src")
        ids = {v.version["v"]: v.id for v in resources.versions(s, r)}
        r.disabled_versions = [ids["3"]]
    renv.trigger("j")
    renv.tick()
    assert json.loads(renv.step("j", "src").stdin)["version"] == {"v": "2"}
    with renv.tx() as s:
        r = resources.get_resource(s, pipelines.get(s, "main", "p"), "src")
        r.pinned_version_id = ids["1"]
    renv.trigger("j")
    renv.tick()
    assert json.loads(renv.step("j", "src", name="2").stdin)["version"] == {"v": "1"}


def test_only_the_last_check_build_is_kept(renv: Env) -> None:
    renv.set(config({"name": "j", "plan": [{"get": "src"}]}))
    for n in range(3):
        answer_check(renv, [{"v": str(n)}])
        renv.now += 11
    assert len(checks(renv)) == 1, "rows grow with versions, not with checks"
    assert versions(renv) == [{"v": "0"}, {"v": "1"}, {"v": "2"}]
    with renv.tx() as s:
        assert s.scalar(select(ResourceConfigRow)).last_check_build_id == checks(renv)[0].id


def test_a_task_image_resource_of_another_type_is_checked_and_fetched_first(renv: Env) -> None:
    renv.set(config({"name": "j", "plan": [{"task": "t", "config": {
        "platform": "linux", "image_resource": {"type": "mock", "source": {"mirror_self": True}},
        "run": {"path": "true"}}}]}, resources_=[]))
    renv.trigger("j")
    renv.tick()
    check = renv.steps("j")[0]
    assert check.resource_type == "mock" and json.loads(check.stdin) == {"source": {"mirror_self": True},
                                                                        "version": None}
    renv.run(check.id, stdout='[{"v": "1"}, {"v": "2"}]')
    renv.tick()
    get = renv.steps("j")[1]
    assert json.loads(get.stdin)["version"] == {"v": "2"}
    renv.run(get.id, stdout='{"version": {"v": "2"}}', outputs={"image": {"rootfs/bin/sh": "", "metadata.json": "{}"}})
    renv.tick()
    t = renv.step("j", "t")
    assert t.image_input == "_image" and t.resource_type == ""
    renv.run(t.id)
    renv.tick()
    assert renv.status("j") == "succeeded"


def test_a_task_image_resource_whose_check_finds_nothing_errors(renv: Env) -> None:
    renv.set(config({"name": "j", "plan": [{"task": "t", "config": {
        "platform": "linux", "image_resource": {"type": "mock", "source": {}}, "run": {"path": "true"}}}]},
        resources_=[]))
    renv.trigger("j")
    renv.tick()
    renv.run(renv.steps("j")[0].id, stdout="[]")
    renv.tick()
    jb = renv.job_build("j", "1")
    assert jb.status == "errored" and "found no version" in jb.reason
