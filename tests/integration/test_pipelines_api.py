"""The pipelines API and fly's pipeline verbs against a real `airside web` (SQLite and PostgreSQL).

No worker runs: a new pipeline starts paused, so a triggered build stays pending. Where a test needs the
step builds a running plan makes (events, destroy's artifacts), it writes them into web's database with the
same rows `airside.web.plans` writes (a build row with `job_build_id`, its events), and web serves them.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from airside.config import Settings
from airside.core import routes
from airside.core.client import WebError
from airside.core.schemas import PipelineSet
from airside.web import builds as wbuilds
from airside.web import db
from tests.procs import WebProc, cli_env

PIPELINE = """\
jobs:
- name: unit
  plan:
  - task: test
    config:
      platform: linux
      image_resource: {type: registry-image, source: {repository: busybox}}
      run: {path: echo, args: ["((greeting))"]}
- name: deploy
  disable_manual_trigger: true
  plan:
  - task: ship
    config:
      platform: linux
      image_resource: {type: registry-image, source: {repository: busybox}}
      run: {path: "true"}
"""

# three problems on three lines: an unknown step key (line 6), an unknown job key (line 8), a bad var (line 11)
INVALID = """\
jobs:
- name: unit
  plan:
  - task: test
    file: ci/test.yml
    colour: red
- name: deploy
  serial_grups: [x]
  plan:
  - task: ship
    file: ((a..b))
"""

_names = (f"p{i}" for i in itertools.count())


def _auth(web: WebProc) -> dict:
    return {"Authorization": f"Bearer {web.TOKEN}"}


def _url(web: WebProc, route: routes.Route, **path: str) -> str:
    return web.url + route.url(**{"team": "main", **path})


def _call(web: WebProc, route: routes.Route, json_body: dict | None = None, headers: dict | None = None,
          **path: str) -> httpx.Response:
    return httpx.request(route.method, _url(web, route, **path), json=json_body,
                         headers=_auth(web) if headers is None else headers, timeout=10)


def _set(web: WebProc, name: str, text: str = PIPELINE, **body: object) -> httpx.Response:
    return _call(web, routes.SET_PIPELINE, {"config": text, "filename": "ci/pipeline.yml",
                                            "vars": {"greeting": "hi"}, **body}, pipeline=name)


def _config(web: WebProc, name: str) -> dict:
    r = _call(web, routes.GET_PIPELINE_CONFIG, pipeline=name)
    assert r.status_code == 200, r.text
    return r.json()


def _trigger(web: WebProc, p: str, job: str) -> httpx.Response:
    return _call(web, routes.TRIGGER_JOB, pipeline=p, job=job)


def _engine(web: WebProc) -> Engine:
    settings = Settings(data_dir=Path(web.settings["data_dir"]), database_url=web.settings["database_url"] or "")
    return db.make_engine(settings.resolved_database_url)


def _add_step(engine: Engine, job_build_id: int, name: str, logs: list[str], status: str = "running") -> int:
    """A task step's build row as a running plan makes it, with `logs` as its stdout events."""
    with Session(engine) as s, s.begin():
        now = time.time()
        b = db.BuildRow(status=status, config={}, tags=[], inputs=[], outputs=[], log_offsets={}, next_seq=0,
                        created_at=now, job_build_id=job_build_id, step_path=f"do.{name}", step_name=name)
        s.add(b)
        s.flush()
        for text in logs:
            wbuilds.event(s, b, "log", text, time.time(), stream="stdout")
        return b.id


def _step_logs(engine: Engine, build_id: int, logs: list[str], status: str | None = None) -> None:
    with Session(engine) as s, s.begin():
        b = s.get(db.BuildRow, build_id)
        assert b is not None
        for text in logs:
            wbuilds.event(s, b, "log", text, time.time(), stream="stdout")
        if status is not None:
            b.status, b.finished_at = status, time.time()
            wbuilds.event(s, b, "status", status, time.time())


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def web(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebProc]:
    url = ""
    if request.param == "postgres":
        import psycopg

        base = request.getfixturevalue("postgres_url")
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "pipelines_api_{os.getpid()}"')
        url = base.rsplit("/", 1)[0] + f"/pipelines_api_{os.getpid()}"
    w = WebProc(tmp_path_factory.mktemp(f"pipelines-{request.param}"), database_url=url, heartbeat_ttl=30).start()
    yield w
    w.stop()


# --- pipelines ------------------------------------------------------------------------------------------
def test_set_then_get_round_trips_the_config(web: WebProc) -> None:
    name = next(_names)
    r = _set(web, name)
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["created"] and result["changed"]
    assert result["pipeline"] | {"created_at": 0, "updated_at": 0, "id": 0} == {
        "id": 0, "team": "main", "name": name, "version": 1, "paused": True, "archived": False,
        "created_at": 0, "updated_at": 0, "jobs": ["unit", "deploy"]}
    view = _config(web, name)
    assert view["version"] == 1 and view["config_text"] == PIPELINE
    assert view["config"]["jobs"][0]["plan"][0]["config"]["run"] == {"path": "echo", "args": ["hi"]}  # var applied
    assert view["config"]["jobs"][1]["disable_manual_trigger"] is True
    got = _call(web, routes.GET_PIPELINE, pipeline=name).json()
    assert got == result["pipeline"]
    assert name in [p["name"] for p in _call(web, routes.LIST_PIPELINES).json()]
    again = _set(web, name).json()  # the same config: nothing changes
    assert (again["created"], again["changed"], again["pipeline"]["version"]) == (False, False, 1)
    other = _set(web, name, vars={"greeting": "hello"}).json()
    assert (other["changed"], other["pipeline"]["version"]) == (True, 2)
    assert _config(web, name)["config"]["jobs"][0]["plan"][0]["config"]["run"]["args"] == ["hello"]


def test_invalid_set_lists_every_problem_and_changes_nothing(web: WebProc) -> None:
    name = next(_names)
    assert _set(web, name).status_code == 200
    before = _config(web, name)
    r = _set(web, name, INVALID)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert [d.split(":")[:2] for d in detail] == [["ci/pipeline.yml", "6"], ["ci/pipeline.yml", "8"],
                                                  ["ci/pipeline.yml", "11"]], detail
    assert "colour" in detail[0] and "serial_grups" in detail[1] and "a..b" in detail[2]
    assert _config(web, name) == before
    # a new pipeline that is invalid is not created either
    fresh = next(_names)
    assert _set(web, fresh, INVALID).status_code == 422
    assert _call(web, routes.GET_PIPELINE, pipeline=fresh).status_code == 404
    # a bad -l file names its line; the stored config stays
    bad_file = _set(web, name, var_files=[["vars.yml", "a: 1\nb: [2\n"]])
    assert bad_file.status_code == 422 and bad_file.json()["detail"][0].startswith("vars.yml:3:1: YAML syntax"), bad_file.text
    not_a_map = _set(web, name, var_files=[["vars.yml", "- a\n"]])
    assert not_a_map.status_code == 422 and "expected a mapping" in not_a_map.text, not_a_map.text
    assert _config(web, name) == before
    # the client's error names every problem, one a line
    with web.client() as c, pytest.raises(WebError) as refused:
        c.set_pipeline("main", name, PipelineSet(config=INVALID, filename="ci/pipeline.yml"))
    assert refused.value.status == 422
    assert refused.value.message == "web said 422: " + "\n".join(detail)


@pytest.mark.parametrize("bad", ["Upper", "has space", "((var))", "_under", "123"])
def test_pipeline_names_follow_concourse_identifiers(web: WebProc, bad: str) -> None:
    r = _set(web, bad)
    assert r.status_code == 422 and "pipeline name" in r.text, r.text
    assert bad not in [p["name"] for p in _call(web, routes.LIST_PIPELINES).json()]


def test_a_set_against_an_old_version_is_a_conflict(web: WebProc) -> None:
    name = next(_names)
    assert _set(web, name, version=0).status_code == 200
    assert _set(web, name, vars={"greeting": "v2"}, version=1).json()["pipeline"]["version"] == 2
    stale = _set(web, name, vars={"greeting": "v3"}, version=1)
    assert stale.status_code == 409 and "version 1 → 2" in stale.text, stale.text
    assert _set(web, name, vars={"greeting": "v3"}, version=0).status_code == 409  # "create", but it exists
    view = _config(web, name)
    assert view["version"] == 2 and view["config"]["jobs"][0]["plan"][0]["config"]["run"]["args"] == ["v2"]


def test_unknown_team_is_404_on_reads_and_writes(web: WebProc) -> None:
    name = next(_names)
    assert _set(web, name).status_code == 200
    for route in (routes.LIST_PIPELINES, routes.GET_PIPELINE, routes.LIST_JOBS):
        r = httpx.request(route.method, web.url + route.url(team="nobody", pipeline=name), headers=_auth(web))
        assert r.status_code == 404 and "unknown team 'nobody'" in r.text, (route, r.text)
    r = httpx.put(web.url + routes.SET_PIPELINE.url(team="nobody", pipeline=name), headers=_auth(web),
                  json={"config": PIPELINE, "vars": {"greeting": "x"}})
    assert r.status_code == 404
    assert httpx.get(web.url + routes.LIST_PIPELINES.url(team="nobody"), headers=_auth(web)).status_code == 404


def test_without_the_token_nothing_is_read_or_changed(web: WebProc) -> None:
    name = next(_names)
    assert _set(web, name).status_code == 200
    before = _config(web, name)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {web.WORKER_TOKEN}"}):
        expect = 403 if headers.get("Authorization", "").endswith(web.WORKER_TOKEN) else 401
        changes = [
            _call(web, routes.SET_PIPELINE, {"config": PIPELINE, "vars": {"greeting": "evil"}}, headers, pipeline=name),
            _call(web, routes.PAUSE_PIPELINE, headers=headers, pipeline=name),
            _call(web, routes.UNPAUSE_PIPELINE, headers=headers, pipeline=name),
            _call(web, routes.TRIGGER_JOB, headers=headers, pipeline=name, job="unit"),
            _call(web, routes.DESTROY_PIPELINE, headers=headers, pipeline=name),
            _call(web, routes.GET_PIPELINE_CONFIG, headers=headers, pipeline=name),
            _call(web, routes.LIST_PIPELINES, headers=headers),
        ]
        assert [r.status_code for r in changes] == [expect] * len(changes), [r.text for r in changes]
    assert _config(web, name) == before
    assert _call(web, routes.GET_PIPELINE, pipeline=name).json()["paused"] is True
    assert _call(web, routes.LIST_JOB_BUILDS, pipeline=name, job="unit").json() == []


def test_pause_and_unpause_pipeline_and_job(web: WebProc) -> None:
    name = next(_names)
    assert _set(web, name).json()["pipeline"]["paused"] is True
    assert _call(web, routes.UNPAUSE_PIPELINE, pipeline=name).json()["paused"] is False
    assert _call(web, routes.GET_PIPELINE, pipeline=name).json()["paused"] is False
    assert _call(web, routes.PAUSE_PIPELINE, pipeline=name).json()["paused"] is True
    assert _call(web, routes.PAUSE_JOB, pipeline=name, job="unit").json()["paused"] is True
    jobs = {j["name"]: j["paused"] for j in _call(web, routes.LIST_JOBS, pipeline=name).json()}
    assert jobs == {"unit": True, "deploy": False}
    assert _call(web, routes.UNPAUSE_JOB, pipeline=name, job="unit").json()["paused"] is False
    assert _call(web, routes.GET_JOB, pipeline=name, job="unit").json()["paused"] is False
    assert _call(web, routes.PAUSE_JOB, pipeline=name, job="nope").status_code == 404


# --- job builds ------------------------------------------------------------------------------------------
def test_trigger_numbers_builds_per_job(web: WebProc) -> None:
    name = next(_names)
    two_jobs = PIPELINE.replace("  disable_manual_trigger: true\n", "")
    assert _set(web, name, two_jobs).status_code == 200
    made = [_trigger(web, name, j) for j in ("unit", "unit", "deploy", "unit")]
    assert [r.status_code for r in made] == [201] * 4
    assert [(b["job"], b["name"], b["status"]) for b in (r.json() for r in made)] == [
        ("unit", "1", "pending"), ("unit", "2", "pending"), ("deploy", "1", "pending"), ("unit", "3", "pending")]
    listed = _call(web, routes.LIST_JOB_BUILDS, pipeline=name, job="unit").json()
    assert [b["name"] for b in listed] == ["3", "2", "1"]
    job = _call(web, routes.GET_JOB, pipeline=name, job="unit").json()
    assert job["next_build"] == 4 and job["latest"]["name"] == "3"
    got = _call(web, routes.GET_JOB_BUILD, pipeline=name, job="deploy", build="1").json()
    assert (got["pipeline"], got["job"], got["number"]) == (name, "deploy", 1)


def test_disable_manual_trigger_is_a_conflict_and_makes_no_build(web: WebProc) -> None:
    name = next(_names)
    assert _set(web, name).status_code == 200
    r = _trigger(web, name, "deploy")
    assert r.status_code == 409 and "disable_manual_trigger" in r.text
    assert _call(web, routes.LIST_JOB_BUILDS, pipeline=name, job="deploy").json() == []
    assert _call(web, routes.GET_JOB, pipeline=name, job="deploy").json()["next_build"] == 1


def test_a_rename_by_old_name_keeps_the_builds_and_their_numbering(web: WebProc) -> None:
    name = next(_names)
    assert _set(web, name).status_code == 200
    assert [_trigger(web, name, "unit").json()["name"] for _ in range(2)] == ["1", "2"]
    renamed = PIPELINE.replace("- name: unit\n", "- name: unit-tests\n  old_name: unit\n")
    assert _set(web, name, renamed).json()["pipeline"]["jobs"] == ["unit-tests", "deploy"]
    assert [b["name"] for b in _call(web, routes.LIST_JOB_BUILDS, pipeline=name, job="unit-tests").json()] == ["2", "1"]
    assert _trigger(web, name, "unit-tests").json()["name"] == "3"
    assert _call(web, routes.GET_JOB, pipeline=name, job="unit").status_code == 404


def test_rerun_names_the_new_build_after_the_original(web: WebProc) -> None:
    name = next(_names)
    assert _set(web, name).status_code == 200
    assert _trigger(web, name, "unit").json()["name"] == "1"
    first = _call(web, routes.RERUN_JOB_BUILD, pipeline=name, job="unit", build="1")
    assert first.status_code == 201 and first.json()["name"] == "1.1"
    assert _call(web, routes.RERUN_JOB_BUILD, pipeline=name, job="unit", build="1.1").json()["name"] == "1.2"
    assert _trigger(web, name, "unit").json()["name"] == "2"
    assert _call(web, routes.RERUN_JOB_BUILD, pipeline=name, job="unit", build="9").status_code == 404


def test_abort_of_a_pending_build_ends_it_aborted(web: WebProc) -> None:
    name = next(_names)
    assert _set(web, name).status_code == 200
    assert _trigger(web, name, "unit").status_code == 201
    r = _call(web, routes.ABORT_JOB_BUILD, pipeline=name, job="unit", build="1")
    assert r.status_code == 200 and r.json()["status"] == "aborted" and r.json()["finished_at"] is not None
    assert _call(web, routes.GET_JOB_BUILD, pipeline=name, job="unit", build="1").json()["status"] == "aborted"
    assert _call(web, routes.ABORT_JOB_BUILD, pipeline=name, job="unit", build="1").json()["status"] == "aborted"
    assert _call(web, routes.ABORT_JOB_BUILD, pipeline=name, job="unit", build="2").status_code == 404


def test_destroy_removes_the_pipeline_and_its_step_builds_artifacts(web: WebProc) -> None:
    name, keep = next(_names), next(_names)
    assert _set(web, name).status_code == 200 and _set(web, keep).status_code == 200
    job_build = _trigger(web, name, "unit").json()
    engine = _engine(web)
    step = _add_step(engine, job_build["id"], "test", ["hello\n"], status="succeeded")
    artifacts = Path(web.settings["data_dir"]) / "artifacts" / str(step)
    (artifacts / "outputs").mkdir(parents=True)
    (artifacts / "outputs" / "out.tar").write_bytes(b"x")
    r = _call(web, routes.DESTROY_PIPELINE, pipeline=name)
    assert r.status_code == 204, r.text
    assert _call(web, routes.GET_PIPELINE, pipeline=name).status_code == 404
    assert _call(web, routes.GET_JOB_BUILD, pipeline=name, job="unit", build="1").status_code == 404
    assert not artifacts.exists()
    assert httpx.get(web.url + routes.GET_BUILD.url(build_id=str(step)), headers=_auth(web)).status_code == 404
    assert [p["name"] for p in _call(web, routes.LIST_PIPELINES).json() if p["name"] in (name, keep)] == [keep]
    assert _call(web, routes.DESTROY_PIPELINE, pipeline=name).status_code == 404
    engine.dispose()


def _sse_events(lines: Iterator[str]) -> Iterator[tuple[str, dict]]:
    kind = "message"
    for line in lines:
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            yield kind, json.loads(line[6:])


def test_job_build_events_merge_every_step_until_the_build_and_its_steps_end(web: WebProc) -> None:
    name = next(_names)
    assert _set(web, name).status_code == 200
    jb = _trigger(web, name, "unit").json()
    engine = _engine(web)
    first = _add_step(engine, jb["id"], "unit", ["one\n", "two\n"])
    url = _url(web, routes.JOB_BUILD_EVENTS, pipeline=name, job="unit", build="1")
    seen: list[tuple[str, dict]] = []
    with httpx.stream("GET", url, headers=_auth(web), timeout=httpx.Timeout(10, read=20)) as resp:
        assert resp.status_code == 200
        events = _sse_events(resp.iter_lines())
        for kind, data in events:
            seen.append((kind, data))
            if kind == "log" and data["data"] == "two\n":
                break
        second = _add_step(engine, jb["id"], "lint", ["three\n"])
        for kind, data in events:
            seen.append((kind, data))
            if kind == "log" and data["data"] == "three\n":
                break
        # the job build ends (aborted while pending) but its steps still run: the stream waits for them
        assert _call(web, routes.ABORT_JOB_BUILD, pipeline=name, job="unit", build="1").json()["status"] == "aborted"
        _step_logs(engine, first, ["four\n"], status="aborted")
        _step_logs(engine, second, [], status="aborted")
        seen += list(events)
    engine.dispose()
    summary = [(k, d.get("step"), d.get("data")) for k, d in seen]
    assert summary[:3] == [("step", "unit", None), ("log", "unit", "one\n"), ("log", "unit", "two\n")]
    assert summary[3:5] == [("step", "lint", None), ("log", "lint", "three\n")]
    rest = summary[5:]
    assert ("log", "unit", "four\n") in rest and ("status", "unit", "aborted") in rest and ("status", "lint", "aborted") in rest
    assert rest[-1][0] == "end" and seen[-1][1]["status"] == "aborted"
    assert {d["build_id"] for k, d in seen if k == "step"} == {first, second}


def test_openapi_lists_every_pipelines_route(web: WebProc) -> None:
    spec = httpx.get(web.url + "/openapi.json").json()
    section = [r for r in vars(routes).values() if isinstance(r, routes.Route) and r.path.startswith(routes.TEAM)
               and not r.path.startswith(routes.LIST_RESOURCES.path)]  # resources: tests/integration/test_resources_api
    assert len(section) == 17  # LIST_PIPELINES … JOB_BUILD_EVENTS
    for r in section:
        assert r.method.lower() in spec["paths"].get(r.path, {}), f"{r.method} {r.path} not in /openapi.json"
    ok = spec["paths"][routes.TRIGGER_JOB.path]["post"]["responses"]["201"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/JobBuild"}
    assert "PipelineSetResult" in json.dumps(spec["paths"][routes.SET_PIPELINE.path]["put"]["responses"])


# --- the CLI ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cli_web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebProc]:
    w = WebProc(tmp_path_factory.mktemp("pipelines-cli"), heartbeat_ttl=30).start()
    yield w
    w.stop()


def _cli(web: WebProc, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    """`airside ARGS` as the operator, with `stdin` as its input (an empty one answers a prompt with EOF)."""
    env = {**cli_env({"web_url": web.url, "token": web.TOKEN}), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "airside.cli", *args], env=env, input=stdin, capture_output=True,
                          text=True, timeout=30)


def test_set_pipeline_shows_the_diff_asks_and_applies(cli_web: WebProc, tmp_path: Path) -> None:
    f = tmp_path / "pipeline.yml"
    f.write_text(PIPELINE)
    made = _cli(cli_web, "set-pipeline", "-p", "demo", "-c", str(f), "-v", "greeting=hi", "-n")
    assert made.returncode == 0, made.stderr
    assert "+        - hi" in made.stdout and "pipeline created!" in made.stdout and "unpause-pipeline" in made.stdout
    declined = _cli(cli_web, "set-pipeline", "-p", "demo", "-c", str(f), "-v", "greeting=hello", stdin="n\n")
    assert declined.returncode == 0, declined.stderr
    assert "--- demo (version 1)" in declined.stdout
    assert "-        - hi\n+        - hello" in declined.stdout and "bailing out" in declined.stdout
    assert _config(cli_web, "demo")["version"] == 1
    applied = _cli(cli_web, "set-pipeline", "-p", "demo", "-c", str(f), "-v", "greeting=hello", stdin="y\n")
    assert applied.returncode == 0 and "configuration updated (version 2)" in applied.stdout, applied.stdout
    assert _config(cli_web, "demo")["config"]["jobs"][0]["plan"][0]["config"]["run"]["args"] == ["hello"]
    same = _cli(cli_web, "set-pipeline", "-p", "demo", "-c", str(f), "-v", "greeting=hello")
    assert same.returncode == 0 and "no changes to apply" in same.stdout and _config(cli_web, "demo")["version"] == 2


def test_set_pipeline_of_an_invalid_config_exits_1_and_sets_nothing(cli_web: WebProc, tmp_path: Path) -> None:
    f = tmp_path / "bad.yml"
    f.write_text(INVALID)
    r = _cli(cli_web, "set-pipeline", "-p", "broken", "-c", str(f), "-n")
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"error: {f}:6: " in r.stderr and f"error: {f}:8: " in r.stderr and f"error: {f}:11: " in r.stderr
    assert "3 problems" in r.stderr
    assert _call(cli_web, routes.GET_PIPELINE, pipeline="broken").status_code == 404


def test_json_outputs_parse_and_match_the_api(cli_web: WebProc, tmp_path: Path) -> None:
    f = tmp_path / "pipeline.yml"
    f.write_text(PIPELINE)
    assert _cli(cli_web, "set-pipeline", "-p", "js", "-c", str(f), "-v", "greeting=hi", "-n").returncode == 0
    assert _cli(cli_web, "trigger-job", "-j", "js/unit").stdout.strip() == "started js/unit #1"
    assert _cli(cli_web, "pause-job", "-j", "js/unit").returncode == 0
    pipelines = json.loads(_cli(cli_web, "pipelines", "--json").stdout)
    assert {p["name"]: p["jobs"] for p in pipelines}["js"] == ["unit", "deploy"]
    jobs = json.loads(_cli(cli_web, "jobs", "-p", "js", "--json").stdout)
    assert [(j["name"], j["paused"], (j["latest"] or {}).get("name")) for j in jobs] == [("unit", True, "1"),
                                                                                     ("deploy", False, None)]
    bs = json.loads(_cli(cli_web, "builds", "-j", "js/unit", "--json").stdout)
    assert [(b["name"], b["status"]) for b in bs] == [("1", "pending")]
    config = json.loads(_cli(cli_web, "get-pipeline", "-p", "js", "--json").stdout)
    assert config == _config(cli_web, "js")["config"]
    assert "name: unit" in _cli(cli_web, "get-pipeline", "-p", "js").stdout  # YAML by default
    one_off = json.loads(_cli(cli_web, "builds", "--json").stdout)  # without -j: one-off builds, as before
    assert one_off == []


def test_watch_prefixes_each_step_and_exits_with_the_outcome(cli_web: WebProc, tmp_path: Path) -> None:
    f = tmp_path / "pipeline.yml"
    f.write_text(PIPELINE)
    assert _cli(cli_web, "set-pipeline", "-p", "w", "-c", str(f), "-v", "greeting=hi", "-n").returncode == 0
    jb = _call(cli_web, routes.TRIGGER_JOB, pipeline="w", job="unit").json()
    engine = _engine(cli_web)
    unit = _add_step(engine, jb["id"], "unit", ["compiling", " done\nok\n"])
    env = {**cli_env({"web_url": cli_web.url, "token": cli_web.TOKEN}), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "airside.cli", "watch", "-j", "w/unit"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "[unit] compiling done\n"  # a line split over two chunks stays one line
        assert proc.stdout.readline() == "[unit] ok\n"
        _step_logs(engine, unit, ["partial"], status="aborted")
        aborted = _cli(cli_web, "abort-build", "-j", "w/unit", "-b", "1")
        assert aborted.returncode == 0 and "w/unit #1: aborted" in aborted.stdout, aborted.stderr
        out, errs = proc.communicate(timeout=20)
    finally:
        proc.kill()
        engine.dispose()
    assert out == "[unit] partial\n"
    assert proc.returncode == 130, errs  # execute's EXIT_ABORTED
    assert "[unit] started" in errs and "[unit] aborted" in errs and "aborted" in errs.splitlines()[-1]


def test_trigger_watch_and_abort_build_forms(cli_web: WebProc, tmp_path: Path) -> None:
    f = tmp_path / "pipeline.yml"
    f.write_text(PIPELINE)
    assert _cli(cli_web, "set-pipeline", "-p", "t", "-c", str(f), "-v", "greeting=hi", "-n").returncode == 0
    manual = _cli(cli_web, "trigger-job", "-j", "t/deploy")
    assert manual.returncode == 1 and "disable_manual_trigger" in manual.stderr
    assert _cli(cli_web, "watch", "-j", "t/unit").returncode == 1  # no build yet
    assert _cli(cli_web, "trigger-job", "-j", "t/unit").returncode == 0
    assert _cli(cli_web, "abort-build").returncode == 2  # neither BUILD_ID nor -j/-b
    assert _cli(cli_web, "abort-build", "7", "-j", "t/unit", "-b", "1").returncode == 2  # both
    assert _cli(cli_web, "builds", "-j", "no-slash").returncode == 2
    assert _cli(cli_web, "abort-build", "-j", "t/unit", "-b", "1").returncode == 0
    watched = _cli(cli_web, "watch", "-j", "t/unit", "-b", "1")
    assert watched.returncode == 130 and "aborted before it started" in watched.stderr
    destroy = _cli(cli_web, "destroy-pipeline", "-p", "t", stdin="n\n")
    assert destroy.returncode == 0 and "bailing out" in destroy.stdout
    assert _call(cli_web, routes.GET_PIPELINE, pipeline="t").status_code == 200
    assert _cli(cli_web, "destroy-pipeline", "-p", "t", "-n").returncode == 0
    assert _call(cli_web, routes.GET_PIPELINE, pipeline="t").status_code == 404
