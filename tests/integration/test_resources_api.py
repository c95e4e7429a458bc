"""The resources API and fly's resource verbs against a real `airside web` (SQLite and PostgreSQL): listings,
checks on request (`from`), the check webhook and its token, pins and disabled versions as the gets of real
job builds see them, versions newest first with the builds that fetched and produced them, 404s.

No `airside worker` can offer a resource type yet (the setting that fills the worker's
`Tasks(resource_types=…)` is not on main), so the test plays the worker's part through web's worker API:
it registers with a resource type, long-polls the builds web places on it, reads each script's request (the
build's stdin) and answers with its stdout/stderr and exit as a worker's runner reports them. Everything
between is web's own: the check and get builds, their placement, storing versions, choosing a get's version.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from airside.core import routes
from airside.core.schemas import Assignment, ResourceType, WorkerRegistration, new_boot_epoch
from tests.procs import WebProc, cli_env, wait_for

TYPE = "mock"  # a core type, so set-pipeline accepts it; only the played worker offers it
_names = (f"r{i}" for i in itertools.count())


class PlayedWorker:
    """A worker offering resource type `mock`, played over web's worker API (see the module's docstring)."""

    def __init__(self, web: WebProc, name: str = "rw") -> None:
        self.name, self.epoch = name, new_boot_epoch()
        self.http = httpx.Client(base_url=web.url, headers={"Authorization": f"Bearer {web.WORKER_TOKEN}"}, timeout=30)
        reg = WorkerRegistration(name=name, boot_epoch=self.epoch, max_tasks=1000,
                                 resource_types=[ResourceType(type=TYPE, image="/nonexistent/mock")])
        r = self.http.post(routes.REGISTER_WORKER.path, json=reg.model_dump(mode="json"))
        assert r.status_code == 200, r.text

    def placed(self) -> list[Assignment]:
        r = self.http.get(routes.WORKER_WORK.url(name=self.name), params={"boot_epoch": self.epoch})
        assert r.status_code == 200, r.text
        return [Assignment.model_validate(a) for a in r.json()]

    def assignment(self, build_id: int, timeout: float = 30) -> Assignment:
        """The build once web placed it here."""
        return wait_for(lambda: next((a for a in self.placed() if a.build_id == build_id), None), timeout,
                        f"build {build_id} placed on {self.name}")

    def answer(self, build_id: int, stdout: Any, stderr: str = "", exit_code: int = 0) -> dict[str, Any]:
        """Runs nothing: reports `stdout` (JSON unless a str) as the script's answer. Returns the request."""
        a = self.assignment(build_id)
        out = stdout if isinstance(stdout, str) else json.dumps(stdout)
        chunks = [{"stream": s, "offset": 0, "data": base64.b64encode(d.encode()).decode()}
                  for s, d in (("stdout", out), ("stderr", stderr)) if d]
        for route, body in ((routes.BUILD_PHASE, {"attempt": a.attempt, "phase": "started"}),
                            (routes.BUILD_LOGS, {"attempt": a.attempt, "chunks": chunks}),
                            (routes.BUILD_FINISH, {"attempt": a.attempt, "exit_code": exit_code,
                                                   "status": "succeeded" if exit_code == 0 else "failed"})):
            r = self.http.request(route.method, route.url(build_id=str(build_id)), json=body)
            assert r.status_code < 300, (route, r.text)
        assert a.stdin is not None
        return json.loads(a.stdin)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def web(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebProc]:
    url = ""
    if request.param == "postgres":
        import psycopg

        base = request.getfixturevalue("postgres_url")
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "resources_api_{os.getpid()}"')
        url = base.rsplit("/", 1)[0] + f"/resources_api_{os.getpid()}"
    # a long heartbeat_ttl: the played worker registers once and stays placeable for the whole module
    w = WebProc(tmp_path_factory.mktemp(f"resources-{request.param}"), database_url=url, heartbeat_ttl=600).start()
    yield w
    w.stop()


@pytest.fixture(scope="module")
def worker(web: WebProc) -> PlayedWorker:
    return PlayedWorker(web)


def _auth(web: WebProc) -> dict[str, str]:
    return {"Authorization": f"Bearer {web.TOKEN}"}


def _call(web: WebProc, route: routes.Route, json_body: Any = None, headers: dict | None = None,
          params: dict | None = None, **path: str) -> httpx.Response:
    return httpx.request(route.method, web.url + route.url(**{"team": "main", **path}), json=json_body,
                         params=params, headers=_auth(web) if headers is None else headers, timeout=30)


def _ok(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, (r.status_code, r.text)
    return r.json()


def resource(name: str, **extra: Any) -> dict[str, Any]:
    """A resource of the played type with a source of its own (so no two tests share a config's versions)."""
    return {"name": name, "type": TYPE, "source": {"id": next(_names)}, "check_every": "never", **extra}


def set_pipeline(web: WebProc, p: str, resources: list[dict[str, Any]], jobs: list[dict[str, Any]] | None = None,
                 vars: dict[str, str] | None = None) -> None:
    jobs = jobs or [{"name": "use", "plan": [{"get": r["name"]} for r in resources]}]
    _ok(_call(web, routes.SET_PIPELINE, {"config": yaml.safe_dump({"resources": resources, "jobs": jobs}),
                                         "vars": vars or {}}, pipeline=p))
    _ok(_call(web, routes.UNPAUSE_PIPELINE, pipeline=p))


def get_resource(web: WebProc, p: str, r: str) -> dict[str, Any]:
    return _ok(_call(web, routes.GET_RESOURCE, pipeline=p, resource=r))


def versions(web: WebProc, p: str, r: str, **params: Any) -> list[dict[str, Any]]:
    return _ok(_call(web, routes.RESOURCE_VERSIONS, params=params or None, pipeline=p, resource=r))


def stored(web: WebProc, p: str, r: str, build_id: int) -> dict[str, Any]:
    """The resource once web stored what check build `build_id` found."""
    return wait_for(lambda: (lambda v: v if v["check_build_id"] is None and v["last_check_build_id"] == build_id
                             else None)(get_resource(web, p, r)), 30, f"check {build_id} of {p}/{r} stored")


def check(web: WebProc, worker: PlayedWorker, p: str, r: str, found: list[dict[str, str]],
          from_: dict[str, str] | None = None) -> dict[str, Any]:
    """Checks now (from `from_`), answers with `found`, waits until it is stored; returns the check's request."""
    started = _ok(_call(web, routes.CHECK_RESOURCE, {"from": from_}, pipeline=p, resource=r), 201)
    request = worker.answer(started["build_id"], found)
    stored(web, p, r, started["build_id"])
    return request


def ids(web: WebProc, p: str, r: str) -> dict[str, int]:
    return {v["version"]["n"]: v["id"] for v in versions(web, p, r)}


def newest_build(web: WebProc) -> int:
    """The id of the newest build web has (0: none yet)."""
    return max([b["id"] for b in _ok(_call(web, routes.LIST_BUILDS, params={"limit": 1}))], default=0)


def fetch(web: WebProc, worker: PlayedWorker, p: str, job: str, get: str) -> dict[str, str]:
    """Triggers `job`, answers its get step as the version asked for; returns that version."""
    jb = _ok(_call(web, routes.TRIGGER_JOB, pipeline=p, job=job), 201)

    def get_build() -> int | None:
        b = _ok(_call(web, routes.GET_JOB_BUILD, pipeline=p, job=job, build=jb["name"]))
        return next((s["build_id"] for s in b["steps"] if s["name"] == get and s["build_id"]), None)

    build_id = wait_for(get_build, 30, f"{p}/{job} #{jb['name']}'s get {get}")
    version = json.loads(worker.assignment(build_id).stdin or "{}")["version"]
    worker.answer(build_id, {"version": version, "metadata": [{"name": "n", "value": version["n"]}]})
    wait_for(lambda: _ok(_call(web, routes.GET_JOB_BUILD, pipeline=p, job=job, build=jb["name"]))["status"]
             == "succeeded", 30, f"{p}/{job} #{jb['name']} succeeded")
    return version


# --- the webhook -------------------------------------------------------------------------------------------
def test_webhook_with_the_right_token_starts_a_check_and_a_wrong_or_missing_one_changes_nothing(
        web: WebProc, worker: PlayedWorker) -> None:
    p = next(_names)
    hooked = resource("hooked", webhook_token="((hook))")
    set_pipeline(web, p, [hooked, resource("unhooked"), resource("later", webhook_token="((not_given))")],
                 vars={"hook": "s3cret"})
    hook = routes.CHECK_RESOURCE_WEBHOOK
    before = newest_build(web)
    refused = [
        _call(web, hook, headers={}, pipeline=p, resource="hooked"),  # no token
        _call(web, hook, headers={}, params={"webhook_token": ""}, pipeline=p, resource="hooked"),
        _call(web, hook, headers={}, params={"webhook_token": "s3cre"}, pipeline=p, resource="hooked"),
        _call(web, hook, headers={}, params={"webhook_token": "S3CRET"}, pipeline=p, resource="hooked"),
        _call(web, hook, headers={}, params={"webhook_token": "((hook))"}, pipeline=p, resource="hooked"),
        _call(web, hook, params={"webhook_token": web.TOKEN}, pipeline=p, resource="hooked"),  # operator: no
        _call(web, hook, headers={}, params={"webhook_token": ""}, pipeline=p, resource="unhooked"),
        _call(web, hook, headers={}, params={"webhook_token": "anything"}, pipeline=p, resource="unhooked"),
        _call(web, hook, headers={}, params={"webhook_token": "((not_given))"}, pipeline=p, resource="later"),
    ]
    assert [r.status_code for r in refused] == [401] * len(refused), [r.text for r in refused]
    assert newest_build(web) == before  # no check build was made
    for name in ("hooked", "unhooked", "later"):
        view = get_resource(web, p, name)
        assert (view["check_build_id"], view["last_check_build_id"], view["last_checked"]) == (None, None, None)
    assert [get_resource(web, p, n)["webhook"] for n in ("hooked", "unhooked", "later")] == [True, False, False]

    assert _call(web, hook, headers={}, params={"webhook_token": "s3cret"}, pipeline=p,
                 resource="nope").status_code == 404
    assert _call(web, hook, headers={}, params={"webhook_token": "s3cret"}, pipeline="nope",
                 resource="hooked").status_code == 404
    started = _ok(_call(web, hook, headers={}, params={"webhook_token": "s3cret"}, pipeline=p, resource="hooked"), 201)
    assert get_resource(web, p, "hooked")["check_build_id"] == started["build_id"]
    request = worker.answer(started["build_id"], [{"n": "7"}])
    assert request == {"source": hooked["source"], "version": None}
    stored(web, p, "hooked", started["build_id"])
    assert [v["version"] for v in versions(web, p, "hooked")] == [{"n": "7"}]


def test_the_webhook_needs_no_bearer_token_and_every_other_resource_route_does(web: WebProc,
                                                                               worker: PlayedWorker) -> None:
    p = next(_names)
    set_pipeline(web, p, [resource("src")])
    check(web, worker, p, "src", [{"n": "1"}])
    vid = str(ids(web, p, "src")["1"])
    section = [r for r in vars(routes).values() if isinstance(r, routes.Route)
               and r.path.startswith(routes.LIST_RESOURCES.path)]
    assert len(section) == 9  # LIST_RESOURCES … DISABLE_RESOURCE_VERSION, the webhook among them
    guarded = [r for r in section if r != routes.CHECK_RESOURCE_WEBHOOK]
    before = (get_resource(web, p, "src"), versions(web, p, "src"), newest_build(web))
    for headers, expect in (({}, 401), ({"Authorization": "Bearer wrong"}, 401),
                            ({"Authorization": f"Bearer {web.WORKER_TOKEN}"}, 403)):
        got = {r.path: _call(web, r, {"from": None} if r.method == "POST" else None, headers=headers, pipeline=p,
                             resource="src", version_id=vid).status_code for r in guarded}
        assert got == {r.path: expect for r in guarded}, got
    assert (get_resource(web, p, "src"), versions(web, p, "src"), newest_build(web)) == before
    spec = httpx.get(web.url + "/openapi.json").json()
    for r in section:
        assert r.method.lower() in spec["paths"].get(r.path, {}), f"{r.method} {r.path} not in /openapi.json"


# --- checks on request -------------------------------------------------------------------------------------
def test_check_from_passes_the_version_in_the_request_and_a_running_check_is_a_conflict(
        web: WebProc, worker: PlayedWorker) -> None:
    p = next(_names)
    set_pipeline(web, p, [resource("src", webhook_token="tok")])
    first = check(web, worker, p, "src", [{"n": "1"}, {"n": "2"}, {"n": "3"}])
    assert first["version"] is None
    started = _ok(_call(web, routes.CHECK_RESOURCE, {"from": {"n": "1"}}, pipeline=p, resource="src"), 201)
    assert started["version"] == {"n": "1"}
    again = _call(web, routes.CHECK_RESOURCE, {"from": None}, pipeline=p, resource="src")
    hooked = _call(web, routes.CHECK_RESOURCE_WEBHOOK, headers={}, params={"webhook_token": "tok"}, pipeline=p,
                   resource="src")
    assert (again.status_code, hooked.status_code) == (409, 409), (again.text, hooked.text)
    assert f"running (build {started['build_id']})" in again.text
    request = worker.answer(started["build_id"], [{"n": "1"}, {"n": "4"}])
    assert request["version"] == {"n": "1"}
    stored(web, p, "src", started["build_id"])
    assert check(web, worker, p, "src", [])["version"] == {"n": "4"}  # no `from`: from the latest
    _ok(_call(web, routes.PAUSE_PIPELINE, pipeline=p))
    paused = _call(web, routes.CHECK_RESOURCE, {"from": None}, pipeline=p, resource="src")
    assert paused.status_code == 409 and "paused" in paused.text, paused.text


def test_a_failed_check_keeps_its_error_on_the_resource(web: WebProc, worker: PlayedWorker) -> None:
    p = next(_names)
    set_pipeline(web, p, [resource("src")])
    started = _ok(_call(web, routes.CHECK_RESOURCE, None, pipeline=p, resource="src"), 201)
    worker.answer(started["build_id"], "", stderr="auth failed: bad key\n", exit_code=1)
    view = stored(web, p, "src", started["build_id"])
    assert "auth failed: bad key" in view["check_error"] and view["last_checked"] is not None
    listed = _ok(_call(web, routes.LIST_RESOURCES, pipeline=p))
    assert [r["name"] for r in listed] == ["src"] and listed[0]["check_error"] == view["check_error"]


# --- versions ----------------------------------------------------------------------------------------------
def test_versions_are_newest_first_with_the_builds_that_fetched_and_produced_them(web: WebProc,
                                                                                 worker: PlayedWorker) -> None:
    p, q = next(_names), next(_names)
    src = resource("src")
    set_pipeline(web, p, [src], jobs=[{"name": "use", "plan": [{"get": "src"}]},
                                      {"name": "push", "plan": [{"put": "src", "no_get": True}]}])
    set_pipeline(web, q, [src], jobs=[{"name": "elsewhere", "plan": [{"get": "src"}]}])  # the same config
    check(web, worker, p, "src", [{"n": "1"}, {"n": "2"}])
    check(web, worker, p, "src", [{"n": "3"}])
    assert [v["version"]["n"] for v in versions(web, p, "src")] == ["3", "2", "1"]
    assert [v["version"]["n"] for v in versions(web, p, "src", limit=2)] == ["3", "2"]
    assert [v["version"]["n"] for v in versions(web, p, "src", filter="n:2")] == ["2"]
    assert _call(web, routes.RESOURCE_VERSIONS, params={"filter": "n"}, pipeline=p, resource="src").status_code == 422
    assert fetch(web, worker, p, "use", "src") == {"n": "3"}
    assert fetch(web, worker, q, "elsewhere", "src") == {"n": "3"}  # listed under q's resource, not p's
    jb = _ok(_call(web, routes.TRIGGER_JOB, pipeline=p, job="push"), 201)
    put = wait_for(lambda: next((s["build_id"] for s in _ok(_call(web, routes.GET_JOB_BUILD, pipeline=p, job="push",
                                                                  build=jb["name"]))["steps"] if s["build_id"]), None),
                   30, "the put's build")
    worker.answer(put, {"version": {"n": "9"}})
    wait_for(lambda: versions(web, p, "src")[0]["version"] == {"n": "9"}, 30, "the pushed version stored")
    listed = {v["version"]["n"]: v for v in versions(web, p, "src")}
    assert [v["version"]["n"] for v in versions(web, p, "src")] == ["9", "3", "2", "1"]
    use = _ok(_call(web, routes.GET_JOB_BUILD, pipeline=p, job="use", build="1"))["id"]
    assert (listed["3"]["input_to"], listed["3"]["output_of"]) == (
        [{"job": "use", "build": "1", "job_build_id": use, "step": "src"}], [])
    assert [(u["job"], u["build"]) for u in versions(web, q, "src", filter="n:3")[0]["input_to"]] == [("elsewhere", "1")]
    assert listed["3"]["metadata"] == [{"name": "n", "value": "3"}]
    assert (listed["9"]["input_to"], [(u["job"], u["build"]) for u in listed["9"]["output_of"]]) == ([], [("push", "1")])
    assert all(v["enabled"] and not v["pinned"] for v in listed.values())


# --- pins and disabled versions ----------------------------------------------------------------------------
def test_pin_makes_a_get_fetch_that_version_and_disable_removes_one_from_choice(web: WebProc,
                                                                               worker: PlayedWorker) -> None:
    p = next(_names)
    set_pipeline(web, p, [resource("src")])
    check(web, worker, p, "src", [{"n": "1"}, {"n": "2"}, {"n": "3"}])
    vid = ids(web, p, "src")
    assert fetch(web, worker, p, "use", "src") == {"n": "3"}

    change = {"pin": routes.PIN_RESOURCE_VERSION, "disable": routes.DISABLE_RESOURCE_VERSION,
              "enable": routes.ENABLE_RESOURCE_VERSION}

    def do(how: str, n: str) -> httpx.Response:
        return _call(web, change[how], pipeline=p, resource="src", version_id=str(vid[n]))

    _ok(do("disable", "3"))
    assert [v["enabled"] for v in versions(web, p, "src")] == [False, True, True]
    assert fetch(web, worker, p, "use", "src") == {"n": "2"}  # the newest version still enabled
    pinned = _ok(do("pin", "1"))
    assert (pinned["pinned_version"], pinned["pinned_version_id"]) == ({"n": "1"}, vid["1"])
    assert [v["pinned"] for v in versions(web, p, "src")] == [False, False, True]
    assert fetch(web, worker, p, "use", "src") == {"n": "1"}
    assert do("pin", "3").status_code == 409  # disabled: enable it first
    assert do("disable", "1").status_code == 409  # pinned: unpin it first
    assert get_resource(web, p, "src")["pinned_version_id"] == vid["1"]
    unpinned = _ok(_call(web, routes.UNPIN_RESOURCE, pipeline=p, resource="src"))
    assert (unpinned["pinned_version"], unpinned["pinned_version_id"]) == (None, None)
    assert fetch(web, worker, p, "use", "src") == {"n": "2"}
    _ok(do("enable", "3"))
    assert fetch(web, worker, p, "use", "src") == {"n": "3"}


def test_unknown_names_and_versions_are_404_and_change_nothing(web: WebProc, worker: PlayedWorker) -> None:
    p = next(_names)
    set_pipeline(web, p, [resource("src"), resource("other")])
    check(web, worker, p, "src", [{"n": "1"}])
    check(web, worker, p, "other", [{"n": "1"}])
    theirs = ids(web, p, "other")["1"]
    before = get_resource(web, p, "src"), versions(web, p, "src")
    for route in (routes.PIN_RESOURCE_VERSION, routes.ENABLE_RESOURCE_VERSION, routes.DISABLE_RESOURCE_VERSION):
        for vid in (theirs, 999999):  # a version of another resource is not one of this one's
            r = _call(web, route, pipeline=p, resource="src", version_id=str(vid))
            assert r.status_code == 404 and f"no version {vid}" in r.text, (route, r.text)
    assert (get_resource(web, p, "src"), versions(web, p, "src")) == before
    for route in (routes.GET_RESOURCE, routes.RESOURCE_VERSIONS, routes.CHECK_RESOURCE, routes.UNPIN_RESOURCE):
        r = _call(web, route, pipeline=p, resource="nope")
        assert r.status_code == 404 and "no resource 'nope'" in r.text, (route, r.text)
        assert _call(web, route, pipeline="nope", resource="src").status_code == 404
        assert _call(web, route, team="nobody", pipeline=p, resource="src").status_code == 404
    assert _call(web, routes.LIST_RESOURCES, pipeline="nope").status_code == 404


# --- the CLI ---------------------------------------------------------------------------------------------
def _cli(web: WebProc, *args: str) -> subprocess.CompletedProcess:
    env = {**cli_env({"web_url": web.url, "token": web.TOKEN}), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "airside.cli", *args], env=env, capture_output=True, text=True,
                          timeout=60)


def _cli_watch(web: WebProc, worker: PlayedWorker, args: list[str], found: Any, stderr: str = "",
               exit_code: int = 0) -> tuple[subprocess.CompletedProcess, dict[str, Any]]:
    """`airside ARGS` (a check-resource -w) while the played worker answers the check it starts."""
    env = {**cli_env({"web_url": web.url, "token": web.TOKEN}), "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "airside.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert " in build " in first, first + (proc.stderr.read() if proc.stderr else "")
        request = worker.answer(int(first.rsplit(" ", 1)[1]), found, stderr=stderr, exit_code=exit_code)
        out, errs = proc.communicate(timeout=60)
    finally:
        proc.kill()
    return subprocess.CompletedProcess(args, proc.returncode, first + out, errs), request


def test_resource_commands(web: WebProc, worker: PlayedWorker) -> None:
    p = next(_names)
    set_pipeline(web, p, [resource("src"), resource("other")])
    done, request = _cli_watch(web, worker, ["check-resource", "-r", f"{p}/src", "-w"], [{"n": "1"}, {"n": "2"}],
                               stderr="listing versions\n")
    assert done.returncode == 0, done.stderr
    assert request["version"] is None and "listing versions" in done.stderr
    assert "succeeded" in done.stderr and "latest version n:2" in done.stderr, done.stderr
    done, request = _cli_watch(web, worker, ["check-resource", "-r", f"{p}/src", "--from", "n:1", "-w"], [{"n": "3"}])
    assert done.returncode == 0 and request["version"] == {"n": "1"}, (done.stderr, request)
    assert f"checking {p}/src from n:1 in build" in done.stdout
    failed, _ = _cli_watch(web, worker, ["check-resource", "-r", f"{p}/other", "-w"], "", stderr="auth failed\n",
                           exit_code=1)
    assert failed.returncode == 1 and "errored" in failed.stderr and "auth failed" in failed.stderr, failed.stderr

    listed = json.loads(_cli(web, "resources", "-p", p, "--json").stdout)
    assert listed == _ok(_call(web, routes.LIST_RESOURCES, pipeline=p))
    assert [r["name"] for r in listed] == ["src", "other"]
    table = _cli(web, "resources", "-p", p).stdout
    assert "auth failed" in table and "src" in table
    vs = json.loads(_cli(web, "resource-versions", "-r", f"{p}/src", "--json").stdout)
    assert [v["version"]["n"] for v in vs] == ["3", "2", "1"]

    pinned = _cli(web, "pin-resource", "-r", f"{p}/src", "-v", "n:1")
    assert pinned.returncode == 0 and "pinned 'src' with version n:1" in pinned.stdout, pinned.stderr
    assert get_resource(web, p, "src")["pinned_version"] == {"n": "1"}
    assert "n:1 (pinned)" in _cli(web, "resource-versions", "-r", f"{p}/src").stdout
    missing = _cli(web, "pin-resource", "-r", f"{p}/src", "-v", "n:404")
    assert missing.returncode == 1 and "no version" in missing.stderr, missing.stderr
    assert get_resource(web, p, "src")["pinned_version"] == {"n": "1"}
    assert _cli(web, "unpin-resource", "-r", f"{p}/src").returncode == 0
    assert get_resource(web, p, "src")["pinned_version"] is None
    disabled = _cli(web, "disable-resource-version", "-r", f"{p}/src", "-v", "n:2")
    assert disabled.returncode == 0 and "disabled version n:2" in disabled.stdout, disabled.stderr
    assert [(v["version"]["n"], v["enabled"]) for v in versions(web, p, "src")] == [("3", True), ("2", False),
                                                                                     ("1", True)]
    assert _cli(web, "enable-resource-version", "-r", f"{p}/src", "-v", "n:2").returncode == 0
    assert all(v["enabled"] for v in versions(web, p, "src"))
    assert _cli(web, "check-resource", "-r", "no-slash").returncode == 2
    assert _cli(web, "pin-resource", "-r", f"{p}/src", "-v", "novalue").returncode == 2
    assert _cli(web, "resources", "-p", "nope").returncode == 1
