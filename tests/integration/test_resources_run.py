"""Resources for real: web, a worker offering a resource type (its rootfs dir under resource_types_dir), checks,
triggers, get, put with the implicit get and `passed`, through the resource protocol (request on stdin, answer
on stdout, logs on stderr).

The type here is a small Python resource ("counter", run by the process runtime from the type's rootfs dir):
its versions are the lines of a file in a host directory the source names, so the test adds a version by
appending a line — the way a push adds a commit for the git type."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from airside.core import routes
from airside.core.client import WebError
from tests.integration.test_pipelines_run import Api, task
from tests.procs import WebProc, WorkerProc, state_of, wait_for

SCRIPTS = {
    "check": """
        req = json.load(sys.stdin)
        lines = open(os.path.join(req["source"]["dir"], "versions")).read().split()
        print(f"checking from {req['version']}", file=sys.stderr)
        after = req["version"]["n"] if req["version"] else None
        out = lines[lines.index(after) + 1:] if after in lines else lines[-1:]
        json.dump([{"n": n} for n in out], sys.stdout)
    """,
    "in": """
        req = json.load(sys.stdin)
        dest = sys.argv[1]
        n = req["version"]["n"]
        open(os.path.join(dest, "number"), "w").write(n + "\\n")
        open(os.path.join(dest, "params.json"), "w").write(json.dumps(req.get("params") or {}))
        env = {k: os.environ.get(k, "") for k in ("BUILD_JOB_NAME", "BUILD_PIPELINE_NAME", "BUILD_TEAM_NAME")}
        open(os.path.join(dest, "env.json"), "w").write(json.dumps(env))
        print(f"fetched {n}", file=sys.stderr)
        json.dump({"version": {"n": n}, "metadata": [{"name": "number", "value": n}]}, sys.stdout)
    """,
    "out": """
        req = json.load(sys.stdin)
        src = sys.argv[1]
        n = open(os.path.join(src, req["params"]["file"])).read().strip()
        with open(os.path.join(req["source"]["dir"], "versions"), "a") as f:
            f.write(n + "\\n")
        print(f"pushed {n}", file=sys.stderr)
        json.dump({"version": {"n": n}, "metadata": []}, sys.stdout)
    """,
    "bad": """
        print("oops, this is not JSON")
        print("the script's own complaint", file=sys.stderr)
    """,
}


def make_type(root: Path, name: str, scripts: dict[str, str]) -> None:
    d = root / name / "rootfs" / "opt" / "resource"
    d.mkdir(parents=True)
    for script, body in scripts.items():
        p = d / script
        p.write_text("#!/usr/bin/env python3\nimport json, os, sys\n" + textwrap.dedent(body))
        p.chmod(0o755)
    (root / name / "resource_metadata.json").write_text(json.dumps({"type": name, "version": "0.0.1",
                                                                    "privileged": False}))


@pytest.fixture
def types_dir(tmp_path: Path) -> Path:
    root = tmp_path / "types"
    make_type(root, "counter", {k: SCRIPTS[k] for k in ("check", "in", "out")})
    make_type(root, "broken", {"check": SCRIPTS["bad"], "in": SCRIPTS["bad"], "out": SCRIPTS["bad"]})
    return root


@pytest.fixture
def web(tmp_path: Path):
    w = WebProc(tmp_path, heartbeat_ttl=3).start()
    yield w
    w.stop()


@pytest.fixture
def worker(web: WebProc, tmp_path: Path, types_dir: Path):
    wk = WorkerProc(tmp_path, web, "w1", resource_types_dir=types_dir).start()
    wait_for(lambda: state_of(web.client(), "w1") == "running", what="worker running")
    yield wk
    wk.stop()


def resource(name: str, d: Path, type_: str = "counter", **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, "source": {"dir": str(d)}, "check_every": "1s", **extra}


def build_log(api: Api, build: dict[str, Any], step: str) -> str:
    return api.step_log(build, step)


def test_a_new_version_triggers_the_job_which_fetches_it_and_a_put_feeds_a_passed_job(
        web: WebProc, worker: WorkerProc, tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    for d in (src, out):
        d.mkdir()
    (src / "versions").write_text("1\n")
    (out / "versions").write_text("0\n")
    api = Api(web)
    api.set({"resources": [resource("numbers", src), resource("released", out)], "jobs": [
        {"name": "build", "plan": [
            {"get": "numbers", "trigger": True, "params": {"depth": "1"}},
            task("double", "n=$(cat numbers/number); echo $((n * 2)) > doubled/n; cat numbers/env.json",
                 inputs=[{"name": "numbers"}], outputs=[{"name": "doubled"}]),
            {"put": "released", "params": {"file": "doubled/n"}},
        ]},
        {"name": "ship", "plan": [
            {"get": "released", "trigger": True, "passed": ["build"]},
            task("show", "echo shipping $(cat released/number)", inputs=[{"name": "released"}]),
        ]},
    ]})
    first = api.wait("build", "1", "succeeded", timeout=60)  # the first check finds 1 and triggers build #1
    assert '"BUILD_JOB_NAME": "build"' in build_log(api, first, "double")
    ship = api.wait("ship", "1", "succeeded", timeout=60)  # released 2 passed build: ship triggers on it
    assert "shipping 2" in build_log(api, ship, "show")
    assert (out / "versions").read_text().split() == ["0", "2"]
    (src / "versions").write_text("1\n21\n")  # a new version of numbers: build #2, then ship #2 on 42
    api.wait("build", "2", "succeeded", timeout=60)
    ship2 = api.wait("ship", "2", "succeeded", timeout=60)
    assert "shipping 42" in build_log(api, ship2, "show")
    with web.client() as c, pytest.raises(WebError):
        c.call(routes.GET_JOB_BUILD, team="main", pipeline="p", job="ship", build="3")  # `0` never passed build


def test_a_resource_that_answers_badly_errors_with_its_stderr(web: WebProc, worker: WorkerProc,
                                                              tmp_path: Path) -> None:
    api = Api(web)
    api.set({"resources": [resource("bad", tmp_path, type_="broken", check_every="never")],
             "jobs": [{"name": "j", "plan": [{"put": "bad", "inputs": [], "no_get": True}]}]})
    build = api.wait("j", api.trigger("j"), ("errored", "succeeded", "failed"), timeout=60)
    assert build["status"] == "errored"
    assert "not JSON" in build["reason"] and "the script's own complaint" in build["reason"], build["reason"]
