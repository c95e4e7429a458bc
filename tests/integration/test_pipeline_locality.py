"""Volume locality for pipeline steps, with real `airside web` and `airside worker` processes: a step's inputs
stay volumes on the worker that produced them, the next steps are placed there and mount them (copy-on-write)
instead of downloading them from web; a step that runs elsewhere, or whose source volume is gone, downloads;
the kept volumes go once the job build has ended.

What proves an input was not downloaded: web's request counter for GET_INPUT (`/metrics`), which counts every
download a worker makes, whatever the step. Tasks use the `process` runtime (rootfs_uri: /) and wait for
files the test creates (no test sleeps)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from airside.baggageclaim.client import VolumeClient
from airside.core import routes
from tests.integration.test_pipelines_run import Api, task
from tests.procs import WebProc, WorkerProc, state_of, wait_for

DONE = ("succeeded", "failed", "errored", "aborted")


def input_downloads(web: WebProc) -> float:
    """How many times workers downloaded a build input from web (GET_INPUT, any status)."""
    text = httpx.get(web.url + "/metrics", timeout=10).text
    pattern = rf'^airside_http_requests_total\{{route="{re.escape(routes.GET_INPUT.path)}",status="[0-9]+"\}} (\S+)$'
    return sum(float(m.group(1)) for m in re.finditer(pattern, text, re.M))


def gate(d: Path, name: str) -> str:
    """A task's shell line waiting for the file `name` (the test creates it); gives up (exit 9) after 60 s."""
    return f"echo x >> {d}/{name}.waiting; for i in $(seq 600); do [ -e {d}/{name} ] && break; sleep 0.1; done; " \
           f"[ -e {d}/{name} ] || exit 9"


def waiting(d: Path, name: str) -> bool:
    return (d / f"{name}.waiting").exists()


def start_worker(tmp: Path, web: WebProc, name: str) -> WorkerProc:
    wk = WorkerProc(tmp, web, name).start()
    wait_for(lambda: state_of(web.client(), name) == "running", what=f"{name} running\n{wk.output()[-2000:]}")
    return wk


def step_builds(build: dict) -> dict[str, int]:
    return {s["name"]: s["build_id"] for s in build["steps"]}


def airside_log(web: WebProc, build_id: int) -> str:
    with web.client() as c:
        return "".join(e["data"] for e in c.events(build_id) if e.get("kind") == "log" and e.get("stream") == "airside")


def volume_client(web: WebProc, wk: WorkerProc) -> VolumeClient:
    token = (Path(wk.settings["data_dir"]) / "baggageclaim-token").read_text().strip()
    return VolumeClient(web.client().worker(wk.name).baggageclaim_url, token)


def reaper_rounds(vc: VolumeClient, n: int) -> None:
    """Returns once the worker's reaper has reported to web and destroyed what web said, `n` times over: each
    round destroys an orphan volume made before it (so the last round began after the one before it ended)."""
    for i in range(n):
        vc.create(handle=f"probe-{i}", properties={})
        wait_for(lambda i=i: f"probe-{i}" not in {v.handle for v in vc.list()}, 30, f"reaper round {i + 1}")


def volumes_on(web: WebProc, worker: str) -> set[str]:
    """The volumes web knows `worker` holds (its reaper's last report)."""
    with web.client() as c:
        return {o["handle"] for o in c.call(routes.WORKER_OBJECTS, name=worker) if o["kind"] == "volume"}


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> str:
    return "" if request.param == "sqlite" else request.getfixturevalue("fresh_postgres_db")


@pytest.fixture
def web(tmp_path: Path, db_url: str):
    w = WebProc(tmp_path, database_url=db_url, heartbeat_ttl=3).start()
    yield w
    w.stop()


@pytest.fixture
def marks(tmp_path: Path) -> Path:
    d = tmp_path / "marks"
    d.mkdir()
    return d


def test_the_next_steps_run_on_the_producers_worker_and_mount_its_output_volumes(web: WebProc, tmp_path: Path,
                                                                                 marks: Path) -> None:
    """A 3-step chain: `make` runs on wb (the only worker then); wa joins before `grow` and `check` are placed
    (with both idle, the default strategy alone picks wa: fewest containers, then by name). Both go to wb and
    none of their inputs is downloaded; the output volumes (and grow's input, which its output is a child of)
    stay while the job build runs and go after."""
    wb = start_worker(tmp_path, web, "wb")
    wa = None
    try:
        api = Api(web)
        api.set({"jobs": [{"name": "j", "plan": [
            task("make", f"echo v1 > a/f; {gate(marks, 'made')}", outputs=[{"name": "a"}]),
            # grow's output is at its input's path: it starts as a copy-on-write child of that input
            task("grow", "echo v2 >> a/f", inputs=[{"name": "a"}], outputs=[{"name": "b", "path": "a"}]),
            task("check", f"test \"$(cat a/f)\" = v1 && test \"$(cat b/f)\" = \"$(printf 'v1\\nv2')\" && echo checked;"
                          f" {gate(marks, 'checked')}", inputs=[{"name": "a"}, {"name": "b"}]),
        ]}]})
        before = input_downloads(web)
        name = api.trigger("j")
        wait_for(lambda: waiting(marks, "made"), 60, "make running on wb")
        wa = start_worker(tmp_path, web, "wa")
        (marks / "made").touch()
        wait_for(lambda: waiting(marks, "checked"), 60, f"check running\n{wb.output()[-3000:]}")
        ids = step_builds(api.build("j", name))
        with web.client() as c:
            assert {s: c.build(i).worker_name for s, i in ids.items()} == {"make": "wb", "grow": "wb", "check": "wb"}
        kept = {f"b{ids['make']}-a1-output-a", f"b{ids['grow']}-a1-output-b", f"b{ids['grow']}-a1-in-a"}
        with volume_client(web, wb) as vc:  # make and grow ended: their cleanup ran, and GC has judged since
            reaper_rounds(vc, 2)
            assert kept <= {v.handle for v in vc.list()}, "wb destroyed an output volume its job build still needs"
        (marks / "checked").touch()
        build = api.wait("j", name, DONE)
        assert build["status"] == "succeeded", build
        assert "checked" in api.step_log(build, "check")  # a from make (grow's write did not reach it), b from grow
        assert input_downloads(web) == before, "an input was downloaded from web although wb had it"
        assert "inputs on this worker already (copy-on-write): a" in airside_log(web, ids["grow"])
        assert "inputs on this worker already (copy-on-write): a, b" in airside_log(web, ids["check"])
        # the job build ended: web's GC has wb destroy the kept volumes (seen in its next reports)
        wait_for(lambda: not kept & volumes_on(web, "wb"), 30, f"the kept volumes {kept} destroyed on wb")
    finally:
        wb.stop()
        if wa is not None:
            wa.stop()


def test_with_the_producers_worker_landed_the_next_step_runs_elsewhere_and_downloads(web: WebProc, tmp_path: Path,
                                                                                       marks: Path) -> None:
    w1 = start_worker(tmp_path, web, "w1")
    w2 = None
    try:
        api = Api(web)
        api.set({"jobs": [{"name": "j", "plan": [
            task("make", f"echo v1 > a/f; {gate(marks, 'made')}", outputs=[{"name": "a"}]),
            task("use", "test \"$(cat a/f)\" = v1 && echo used", inputs=[{"name": "a"}]),
        ]}]})
        before = input_downloads(web)
        name = api.trigger("j")
        wait_for(lambda: waiting(marks, "made"), 60, "make running on w1")
        with web.client() as c:
            c.call(routes.LAND_WORKER, name="w1")
        w2 = start_worker(tmp_path, web, "w2")
        (marks / "made").touch()  # make ends, w1 lands (and keeps make's volume, to no use: it takes no work)
        build = api.wait("j", name, DONE)
        assert build["status"] == "succeeded", build
        ids = step_builds(build)
        with web.client() as c:
            assert (c.build(ids["make"]).worker_name, c.build(ids["use"]).worker_name) == ("w1", "w2")
        assert "used" in api.step_log(build, "use")
        assert input_downloads(web) == before + 1  # use's one input, from web
        assert "inputs downloaded from web: a" in airside_log(web, ids["use"])
    finally:
        w1.stop()
        if w2 is not None:
            w2.stop()


def test_a_source_volume_gone_from_the_worker_is_downloaded_instead(web: WebProc, tmp_path: Path,
                                                                    marks: Path) -> None:
    wk = start_worker(tmp_path, web, "w1")
    try:
        api = Api(web)
        api.set({"jobs": [{"name": "j", "plan": [
            task("make", "echo v1 > a/f", outputs=[{"name": "a"}]),
            task("hold", gate(marks, "go")),
            task("use", "test \"$(cat a/f)\" = v1 && echo used", inputs=[{"name": "a"}]),
        ]}]})
        before = input_downloads(web)
        name = api.trigger("j")
        wait_for(lambda: waiting(marks, "go"), 60, "hold running")
        make = step_builds(api.build("j", name))["make"]
        with volume_client(web, wk) as vc:
            assert vc.destroy(f"b{make}-a1-output-a", cascade=True)  # kept until now; an operator removes it
        (marks / "go").touch()
        build = api.wait("j", name, DONE)
        assert build["status"] == "succeeded", build
        use = step_builds(build)["use"]
        assert "used" in api.step_log(build, "use")
        assert input_downloads(web) == before + 1
        assert "inputs downloaded from web: a" in airside_log(web, use)
    finally:
        wk.stop()
