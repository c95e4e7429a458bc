"""`airside execute` end to end: real web, a real worker, tasks with inputs, outputs, params, caches."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import textwrap
from pathlib import Path

import httpx
import pytest

from tests.procs import WebProc, WorkerProc, run_cli, state_of, wait_for
from tests.rootfs import busybox_path, make_busybox_rootfs


def _oci_usable() -> str | None:
    if os.geteuid() != 0:
        return "the oci runtime needs root"
    if shutil.which("runc") is None:
        return "runc is not installed (apt-get install runc)"
    if busybox_path() is None:
        return "busybox-static is not installed"
    return None


RUNTIMES = ["process", pytest.param("oci", marks=[pytest.mark.root, pytest.mark.skipif(bool(_oci_usable()),
                                                                                      reason=_oci_usable() or "")])]


@pytest.fixture(scope="module")
def busybox_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_busybox_rootfs(tmp_path_factory.mktemp("image") / "busybox")


@pytest.fixture
def web(tmp_path: Path):
    w = WebProc(tmp_path, heartbeat_ttl=3).start()
    yield w
    w.stop()


@pytest.fixture(params=RUNTIMES)
def worker(request: pytest.FixtureRequest, web: WebProc, tmp_path: Path):
    wk = WorkerProc(tmp_path, web, "w1", worker_runtime=request.param).start()
    wk.rootfs = str(request.getfixturevalue("busybox_image")) if request.param == "oci" else "/"
    wait_for(lambda: state_of(web.client(), "w1") == "running", what="worker running")
    yield wk
    wk.stop()


def write(path: Path, text: str, rootfs: str = "/") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).replace("rootfs_uri: /\n", f"rootfs_uri: {rootfs}\n"))
    return path


def test_two_inputs_and_an_output(web: WebProc, worker: WorkerProc, tmp_path: Path) -> None:
    write(tmp_path / "src" / "a.txt", "alpha\n")
    write(tmp_path / "deps" / "lib" / "b.txt", "beta\n")
    (tmp_path / "src" / "run.sh").write_text("#!/bin/sh\nset -e\ncat src/a.txt deps/lib/b.txt > out/joined.txt\n"
                                             "echo to-stderr >&2\necho done: $GREETING\n")
    (tmp_path / "src" / "run.sh").chmod(0o755)
    task = write(tmp_path / "task.yml", """
        platform: linux
        rootfs_uri: /
        inputs:
        - name: src
        - {name: deps}
        outputs:
        - name: out
        params: {GREETING: hello, EMPTY: null}
        run: {path: src/run.sh}
    """, worker.rootfs)
    r = run_cli(web, "execute", "-c", str(task), "-i", f"src={tmp_path/'src'}", "-i", f"deps={tmp_path/'deps'}",
                "-o", f"out={tmp_path/'result'}")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "done: hello" in r.stdout
    assert "to-stderr" in r.stderr
    assert (tmp_path / "result" / "joined.txt").read_text() == "alpha\nbeta\n"
    builds = json.loads(run_cli(web, "builds", "--json").stdout)
    b = builds[0]
    assert b["status"] == "succeeded" and b["worker_name"] == "w1" and b["exit_code"] == 0
    for phase in ("queued_at", "placed_at", "image_ready_at", "inputs_ready_at", "started_at", "finished_at"):
        assert b[phase] is not None, phase
    assert b["queued_at"] <= b["placed_at"] <= b["image_ready_at"] <= b["inputs_ready_at"] <= b["started_at"] \
        <= b["finished_at"]
    metrics = httpx.get(web.url + "/metrics").text
    assert 'airside_build_phase_seconds_count{phase="run"} 1.0' in metrics
    assert "airside_tasks_pending 0.0" in metrics


def test_failing_task_propagates_exit_code(web: WebProc, worker: WorkerProc, tmp_path: Path) -> None:
    task = write(tmp_path / "task.yml", """
        platform: linux
        rootfs_uri: /
        run: {path: sh, args: [-c, "echo about to fail; exit 7"]}
    """, worker.rootfs)
    r = run_cli(web, "execute", "-c", str(task))
    assert r.returncode == 7, r.stdout + r.stderr
    assert "about to fail" in r.stdout and "failed with exit code 7" in r.stderr
    b = web.client().builds()[0]
    assert (b.status, b.exit_code) == ("failed", 7)


def test_params_and_dir(web: WebProc, worker: WorkerProc, tmp_path: Path) -> None:
    (tmp_path / "repo" / "sub").mkdir(parents=True)
    task = write(tmp_path / "task.yml", """
        platform: linux
        rootfs_uri: /
        inputs: [{name: repo}]
        params:
          NUMBER: 42
          FLAG: true
          LIST: [1, "two"]
        run:
          path: sh
          dir: repo/sub
          args: [-c, 'echo "pwd=$(basename $(pwd)) n=$NUMBER f=$FLAG l=$LIST"']
    """, worker.rootfs)
    r = run_cli(web, "execute", "-c", str(task), "-i", f"repo={tmp_path/'repo'}")
    assert r.returncode == 0, r.stderr
    assert 'pwd=sub n=42 f=true l=[1,"two"]' in r.stdout


def test_cache_is_reused_across_runs(web: WebProc, worker: WorkerProc, tmp_path: Path) -> None:
    task = write(tmp_path / "task.yml", """
        platform: linux
        rootfs_uri: /
        caches: [{path: cache}]
        run: {path: sh, args: [-c, 'echo run >> cache/runs; echo "runs=$(wc -l < cache/runs)"']}
    """, worker.rootfs)
    # without a cache key execute keys caches by the task config, so the same file shares its caches
    assert "runs=1" in run_cli(web, "execute", "-c", str(task)).stdout
    assert "runs=2" in run_cli(web, "execute", "-c", str(task)).stdout


def test_invalid_task_config_names_field_and_line(web: WebProc, tmp_path: Path) -> None:
    task = write(tmp_path / "task.yml", """
        platform: linux
        rootfs_uri: /
        run:
          path: 5
          colour: red
    """)
    r = run_cli(web, "execute", "-c", str(task))
    assert r.returncode == 2
    assert "task.yml:5: run.path" in r.stderr and "task.yml:6" in r.stderr and "colour" in r.stderr
    assert web.client().builds() == []


def test_no_worker_means_pending_and_abort_ends_it(web: WebProc, tmp_path: Path) -> None:
    task = write(tmp_path / "task.yml", """
        platform: linux
        rootfs_uri: /
        run: {path: "true"}
    """)
    import subprocess
    import sys

    env_cli = run_cli  # keep the helper's environment
    del env_cli
    proc = subprocess.Popen([sys.executable, "-m", "airside.cli", "execute", "-c", str(task)],
                            env={"AIRSIDE_WEB_URL": web.url, "AIRSIDE_TOKEN": web.TOKEN, "PATH": "/usr/bin:/bin"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: web.client().builds() and web.client().builds()[0].status == "pending", what="pending build")
    assert 'airside_tasks_pending 1.0' in httpx.get(web.url + "/metrics").text
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert web.client().builds()[0].status == "aborted"


@pytest.mark.root
@pytest.mark.skipif(bool(_oci_usable()), reason=_oci_usable() or "")
def test_oci_user_limits_and_shared_image(web: WebProc, tmp_path: Path, busybox_image: Path) -> None:
    wk = WorkerProc(tmp_path, web, "oci1", worker_runtime="oci").start()
    try:
        wait_for(lambda: state_of(web.client(), "oci1") == "running", what="worker running")
        task = write(tmp_path / "task.yml", """
            platform: linux
            rootfs_uri: /
            container_limits: {memory: 64MB}
            run: {path: sh, user: user, args: [-c, 'echo "uid=$(id -u) limit=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max)"']}
        """, str(busybox_image))
        for _ in range(2):
            r = run_cli(web, "execute", "-c", str(task))
            assert r.returncode == 0, r.stderr
            assert f"uid=1000 limit={64 << 20}" in r.stdout
        from airside.baggageclaim.client import VolumeClient

        token = (Path(wk.settings["data_dir"]) / "baggageclaim-token").read_text().strip()
        with VolumeClient(web.client().worker("oci1").baggageclaim_url, token) as vc:
            images = [v for v in vc.list() if v.properties.get("role") == "image"]
        assert len(images) == 1  # both runs used one cached image volume (each through its own COW child)
    finally:
        wk.stop()


@pytest.mark.root
@pytest.mark.skipif(bool(_oci_usable()), reason=_oci_usable() or "")
def test_missing_image_errors_with_the_image_named(web: WebProc, tmp_path: Path) -> None:
    wk = WorkerProc(tmp_path, web, "w-img", worker_runtime="oci").start()
    try:
        wait_for(lambda: state_of(web.client(), "w-img") == "running", what="worker running")
        task = write(tmp_path / "task.yml", """
            platform: linux
            image_resource: {type: registry-image, source: {repository: 127.0.0.1:1/nothing/here, tag: v1}}
            run: {path: "true"}
        """)
        r = run_cli(web, "execute", "-c", str(task))
        assert r.returncode == 3, r.stderr
        b = web.client().builds()[0]
        assert b.status == "errored" and "127.0.0.1:1/nothing/here:v1" in b.reason
    finally:
        wk.stop()


def test_abort_kills_a_task_that_prints_nothing(web: WebProc, worker: WorkerProc, tmp_path: Path) -> None:
    """A task that prints once and then stays silent sends no log batch to hear the abort in: the worker must
    act on the abort flag of its work long-poll (seen in e2e: `sleep 300` ran its 300 s after abort-build)."""
    task = write(tmp_path / "task.yml", """
        platform: linux
        rootfs_uri: /
        run: {path: sh, args: [-c, "echo started; exec sleep 300"]}
    """, worker.rootfs)
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "airside.cli", "execute", "-c", str(task)],
                            env={"AIRSIDE_WEB_URL": web.url, "AIRSIDE_TOKEN": web.TOKEN, "PATH": "/usr/bin:/bin"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "started\n"  # its one log batch went through web: silence from here
        build_id = web.client().builds()[0].id
        web.client().abort_build(build_id)
        wait_for(lambda: web.client().builds()[0].status == "aborted", timeout=30, what="aborted within 30 s")
        assert proc.wait(30) == 130
    finally:
        if proc.poll() is None:
            proc.kill()


# --------------------------------------------------------------------------- issue 16: real task files, fly parity

OCI = [pytest.mark.root, pytest.mark.skipif(bool(_oci_usable()), reason=_oci_usable() or "")]


@pytest.fixture
def oci_worker(web: WebProc, tmp_path: Path, busybox_image: Path):
    wk = WorkerProc(tmp_path, web, "oci16", worker_runtime="oci").start()
    wk.rootfs = str(busybox_image)
    wait_for(lambda: state_of(web.client(), "oci16") == "running", what="worker running")
    yield wk
    wk.stop()


@pytest.mark.parametrize("kind", ["mock", "registry-image-resource"])
@pytest.mark.root
@pytest.mark.skipif(bool(_oci_usable()), reason=_oci_usable() or "")
def test_an_image_resource_type_airside_cannot_fetch_errors_when_run(web: WebProc, oci_worker: WorkerProc,
                                                                     tmp_path: Path, kind: str) -> None:
    task = write(tmp_path / "task.yml", f"""
        platform: linux
        image_resource: {{type: {kind}, source: {{mirror_self: true}}}}
        run: {{path: echo, args: [hello]}}
    """)
    r = run_cli(web, "execute", "-c", str(task))
    assert r.returncode == 3, r.stdout + r.stderr
    b = web.client().builds()[0]
    assert b.status == "errored"
    assert f"image unavailable: image_resource type '{kind}' is not supported yet" in b.reason, b.reason
    assert "not supported yet" in r.stderr


@pytest.mark.root
@pytest.mark.skipif(bool(_oci_usable()), reason=_oci_usable() or "")
def test_run_path_omitted_runs_the_image_entrypoint_then_cmd_then_args(web: WebProc, oci_worker: WorkerProc,
                                                                        tmp_path: Path) -> None:
    # a Concourse image artifact (registry-image's output): rootfs/ and metadata.json with entrypoint and cmd
    image = tmp_path / "artifact"
    image.mkdir()
    shutil.copytree(oci_worker.rootfs, image / "rootfs", symlinks=True)
    (image / "metadata.json").write_text(json.dumps({"env": ["FROM_IMAGE=yes"], "user": "",
                                                     "entrypoint": ["/bin/echo", "entry"], "cmd": ["cmd"]}))
    task = write(tmp_path / "task.yml", f"""
        platform: linux
        rootfs_uri: {image}
        run: {{args: [task-arg]}}
    """)
    r = run_cli(web, "execute", "-c", str(task))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "entry cmd task-arg" in r.stdout


@pytest.mark.root
@pytest.mark.skipif(bool(_oci_usable()), reason=_oci_usable() or "")
def test_absolute_input_output_and_cache_paths(web: WebProc, oci_worker: WorkerProc, tmp_path: Path) -> None:
    # a BOSH package build: the input and output live under /var/vcap/packages
    write(tmp_path / "pkg" / "lib.txt", "pkg-config\n")
    task = write(tmp_path / "task.yml", """
        platform: linux
        rootfs_uri: /
        inputs: [{name: pkg, path: /var/vcap/packages/pkg-config}]
        outputs: [{name: target, path: /var/vcap/packages/tar}]
        caches: [{path: /root/.cache/build}]
        run: {path: sh, args: [-c, 'cat /var/vcap/packages/pkg-config/lib.txt > /var/vcap/packages/tar/built;
                                     echo x >> /root/.cache/build/runs; echo "runs=$(wc -l < /root/.cache/build/runs)"']}
    """, oci_worker.rootfs)
    for n in (1, 2):
        r = run_cli(web, "execute", "-c", str(task), "-i", f"pkg={tmp_path / 'pkg'}", "-o", f"target={tmp_path / 'out'}")
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"runs={n}" in r.stdout
    assert (tmp_path / "out" / "built").read_text() == "pkg-config\n"


def test_an_input_at_the_working_directory_itself(web: WebProc, worker: WorkerProc, tmp_path: Path) -> None:
    # oci-build-task's README: `inputs: [{name: context, path: .}]`, outputs beside the context's files
    write(tmp_path / "ctx" / "Dockerfile", "FROM scratch\n")
    task = write(tmp_path / "task.yml", """
        platform: linux
        rootfs_uri: /
        inputs: [{name: context, path: .}]
        outputs: [{name: image}]
        run: {path: sh, args: [-c, 'cat Dockerfile; cp Dockerfile image/copied']}
    """, worker.rootfs)
    r = run_cli(web, "execute", "-c", str(task), "-i", f"context={tmp_path / 'ctx'}", "-o", f"image={tmp_path / 'img'}")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "FROM scratch" in r.stdout
    assert (tmp_path / "img" / "copied").read_text() == "FROM scratch\n"


def test_duplicate_input_names_warn_and_run(web: WebProc, worker: WorkerProc, tmp_path: Path) -> None:
    write(tmp_path / "ci" / "x.txt", "ci-file\n")
    task = write(tmp_path / "task.yml", """
        platform: linux
        rootfs_uri: /
        inputs: [{name: ci}, {name: ci}]
        run: {path: cat, args: [ci/x.txt]}
    """, worker.rootfs)
    r = run_cli(web, "execute", "-c", str(task), "-i", f"ci={tmp_path / 'ci'}")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ci-file" in r.stdout
    assert "task.yml:4: inputs[1].name: duplicate input name 'ci'" in r.stderr


def test_fly_parity_args_env_params_and_input_mapping(web: WebProc, worker: WorkerProc, tmp_path: Path) -> None:
    write(tmp_path / "dir" / "f.txt", "mapped\n")
    task = write(tmp_path / "task.yml", """
        platform: linux
        rootfs_uri: /
        inputs: [{name: src}]
        params: {FROM_ENV: null, NOT_SET: null, GIVEN: file}
        run: {path: sh, args: [-c, 'cat src/f.txt; echo "env=$FROM_ENV unset=[$NOT_SET] given=$GIVEN args=$*"', sh]}
    """, worker.rootfs)
    r = run_cli(web, "execute", "-c", str(task), "-i", f"repo={tmp_path / 'dir'}", "-m", "src=repo", "--",
                "one", "two", env={"FROM_ENV": "from-the-shell", "GIVEN": "ignored: the file gives it"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "mapped" in r.stdout
    assert "env=from-the-shell unset=[] given=file args=one two" in r.stdout


def test_gitignored_files_are_not_uploaded_unless_asked(web: WebProc, worker: WorkerProc, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write(repo / ".gitignore", "build/\n*.log\n")
    write(repo / "kept.txt", "tracked\n")
    write(repo / "new.txt", "untracked but not ignored\n")
    write(repo / "build" / "big.bin", "ignored dir\n")
    write(repo / "debug.log", "ignored file\n")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "add", ".gitignore", "kept.txt"], check=True)
    task = write(tmp_path / "task.yml", """
        platform: linux
        rootfs_uri: /
        inputs: [{name: repo}]
        run: {path: sh, args: [-c, 'cd repo && find . -type f ! -path "./.git/*" | sort | tr "\\n" " "']}
    """, worker.rootfs)
    r = run_cli(web, "execute", "-c", str(task), "-i", f"repo={repo}")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.split() == ["./.gitignore", "./kept.txt", "./new.txt"]
    r = run_cli(web, "execute", "-c", str(task), "-i", f"repo={repo}", "--include-ignored")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.split() == ["./.gitignore", "./build/big.bin", "./debug.log", "./kept.txt", "./new.txt"]


@pytest.mark.root
@pytest.mark.skipif(bool(_oci_usable()), reason=_oci_usable() or "")
def test_image_override(web: WebProc, oci_worker: WorkerProc, tmp_path: Path) -> None:
    # --image replaces the task's image with a registry image: the build's config says so, and the
    # worker tries that image (an address nothing answers on: the error names it)
    task = write(tmp_path / "task.yml", """
        platform: linux
        rootfs_uri: /
        run: {path: "true"}
    """, oci_worker.rootfs)
    r = run_cli(web, "execute", "-c", str(task), "--image", "127.0.0.1:1/over/ride:v2")
    assert r.returncode == 3, r.stdout + r.stderr
    b = web.client().builds()[0]
    assert b.config["image_resource"]["source"] == {"repository": "127.0.0.1:1/over/ride", "tag": "v2"}
    assert "127.0.0.1:1/over/ride:v2" in b.reason
