"""Issue 18's end-to-end on this machine: the bundled git resource type against repositories served on loopback
(git daemon). A new commit is found by the check and triggers the job; the task runs on that commit; a `put`
pushes it with a tag to a second repository; a second job with `passed` runs on the same version.

The worker runs the process runtime (tasks and the type's scripts on the host), so the scripts reach the git
daemon on 127.0.0.1; on an oci worker they would run in their rootfs on the worker's bridge instead."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_pipelines_run import Api, task
from tests.procs import WebProc, WorkerProc, state_of, wait_for
from tests.unit.resources.conftest import resource_types  # noqa: F401 - the session fixture building the types
from tests.unit.resources.gitservers import Repo, git, git_daemon
from tests.unit.resources.harness import OUT

pytestmark = pytest.mark.root


@pytest.fixture
def served(tmp_path: Path):
    base = tmp_path / "repos"
    base.mkdir()
    app, releases = Repo(base, "app"), Repo(base, "releases")
    with git_daemon(base) as url:
        yield app, releases, url


def test_a_commit_triggers_build_which_pushes_a_tag_and_verify_runs_on_it(
        resource_types, served, tmp_path: Path) -> None:  # noqa: F811
    app, releases, url = served
    first = app.commit("first", {"VERSION": "1.0\n"})
    web = WebProc(tmp_path, heartbeat_ttl=3).start()
    wk = WorkerProc(tmp_path, web, "w1", resource_types_dir=OUT).start()
    try:
        wait_for(lambda: state_of(web.client(), "w1") == "running", what="worker running")
        api = Api(web)
        api.set({"resources": [
            {"name": "app", "type": "git", "source": {"uri": f"{url}/app.git", "branch": "main"}, "check_every": "1s"},
            {"name": "release", "type": "git", "source": {"uri": f"{url}/releases.git", "branch": "main"},
             "check_every": "1h"},
        ], "jobs": [
            {"name": "build", "plan": [
                {"get": "app", "trigger": True},
                task("test", "cat app/VERSION; git -C app rev-parse HEAD; echo v$(cat app/VERSION) > tag/name",
                     inputs=[{"name": "app"}], outputs=[{"name": "tag"}]),
                {"put": "release", "params": {"repository": "app", "tag": "tag/name"}},
            ]},
            {"name": "verify", "plan": [
                {"get": "release", "trigger": True, "passed": ["build"]},
                task("check", "git -C release rev-parse HEAD", inputs=[{"name": "release"}]),
            ]},
        ]})
        build = api.wait("build", "1", ("succeeded", "failed", "errored"), timeout=120)
        assert build["status"] == "succeeded", build
        assert first in api.step_log(build, "test")  # the task ran on the commit the check found
        assert git(releases.bare, "rev-parse", "refs/tags/v1.0") == first  # put pushed it, tagged
        verify = api.wait("verify", "1", ("succeeded", "failed", "errored"), timeout=120)
        assert verify["status"] == "succeeded", verify
        assert first in api.step_log(verify, "check")  # the version that passed build
        second = app.commit("second", {"VERSION": "1.1\n"})
        build2 = api.wait("build", "2", ("succeeded", "failed", "errored"), timeout=120)
        assert build2["status"] == "succeeded" and second in api.step_log(build2, "test")
        assert git(releases.bare, "rev-parse", "refs/tags/v1.1") == second
        verify2 = api.wait("verify", "2", ("succeeded", "failed", "errored"), timeout=120)
        assert second in api.step_log(verify2, "check")
    finally:
        wk.stop()
        web.stop()
