"""Registry credentials on workers (issue 16 item 3): a real OCI registry (distribution v3, built from the Go
module proxy by tools/registry/build-registry.sh and cached) on loopback with htpasswd auth holds the busybox
test image; a task whose image_resource.source carries the right username/password runs on an oci worker,
a wrong password errors the build with the registry's reason, and the password is never logged."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.pg import free_port
from tests.procs import WebProc, WorkerProc, run_cli, state_of, wait_for
from tests.rootfs import busybox_path, layer_from_dir, make_busybox_rootfs, make_oci_layout

ROOT = Path(__file__).resolve().parents[2]
USER, PASSWORD = "robot", "s3cret-Pa55word-for-tests"
pytestmark = [pytest.mark.root, pytest.mark.timeout(900)]


def _unusable() -> str | None:
    if os.geteuid() != 0:
        return "the oci runtime needs root"
    for tool in ("runc", "skopeo"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install {tool})"
    if busybox_path() is None:
        return "busybox-static is not installed"
    return None


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`host:port/team/busybox:1` in a registry that wants USER/PASSWORD."""
    bcrypt = pytest.importorskip("bcrypt", reason="pip install -e .[dev] (bcrypt makes the htpasswd file)")
    if _unusable():
        pytest.skip(_unusable() or "")
    built = subprocess.run(["bash", str(ROOT / "tools/registry/build-registry.sh")], capture_output=True, text=True,
                           timeout=800)
    assert built.returncode == 0, f"building the registry failed:\n{built.stderr[-3000:]}"
    binary = built.stdout.strip().splitlines()[-1]
    d = tmp_path_factory.mktemp("registry")
    (d / "htpasswd").write_text(f"{USER}:{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt()).decode()}\n")
    port = free_port()
    (d / "config.yml").write_text(textwrap.dedent(f"""\
        version: 0.1
        log: {{level: warn}}
        storage: {{filesystem: {{rootdirectory: {d / 'data'}}}}}
        http: {{addr: 127.0.0.1:{port}, secret: for-tests}}
        auth: {{htpasswd: {{realm: airside-test, path: {d / 'htpasswd'}}}}}
    """))
    with open(d / "registry.log", "w") as log:
        proc = subprocess.Popen([binary, "serve", str(d / "config.yml")], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code == 401, 30,
                 f"the registry answering 401 on 127.0.0.1:{port}")
        layout = d / "oci"
        layout.mkdir()
        make_oci_layout([layer_from_dir(make_busybox_rootfs(d / "busybox"))], layout, as_tar=False,
                        env=["PATH=/bin"])
        ref = f"127.0.0.1:{port}/team/busybox:1"
        push = subprocess.run(["skopeo", "copy", "--insecure-policy", "--dest-tls-verify=false", "--dest-creds",
                               f"{USER}:{PASSWORD}", f"oci:{layout}:latest", f"docker://{ref}"],
                              capture_output=True, text=True, timeout=120)
        assert push.returncode == 0, push.stderr
        yield ref
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


@pytest.fixture
def web(tmp_path: Path) -> Iterator[WebProc]:
    w = WebProc(tmp_path, heartbeat_ttl=3).start()
    yield w
    w.stop()


@pytest.fixture
def worker(web: WebProc, tmp_path: Path) -> Iterator[WorkerProc]:
    wk = WorkerProc(tmp_path, web, "w1", worker_runtime="oci").start()
    wait_for(lambda: state_of(web.client(), "w1") == "running", what="worker running")
    yield wk
    wk.stop()


def _task(tmp_path: Path, ref: str, password: str | None) -> Path:
    repo, _, tag = ref.rpartition(":")
    creds = f", username: {USER}, password: {password}" if password is not None else ""
    path = tmp_path / "task.yml"
    path.write_text(textwrap.dedent(f"""\
        platform: linux
        image_resource:
          type: registry-image
          source: {{repository: "{repo}", tag: "{tag}", insecure: true{creds}}}
        run: {{path: /bin/sh, args: [-c, "echo pulled-with-credentials"]}}
    """))
    return path


def test_right_credentials_pull_the_image(web: WebProc, worker: WorkerProc, registry: str, tmp_path: Path) -> None:
    r = run_cli(web, "execute", "-c", str(_task(tmp_path, registry, PASSWORD)), timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr + worker.output()[-3000:]
    assert "pulled-with-credentials" in r.stdout
    assert PASSWORD not in worker.output() + web.output()  # never logged
    assert not list(Path(worker.settings["work_dir"]).rglob("auth.json"))  # the auth file went with the pull


@pytest.mark.parametrize("password", ["wrong-password", None], ids=["wrong", "none"])
def test_wrong_credentials_error_with_the_registrys_reason(web: WebProc, worker: WorkerProc, registry: str,
                                                           tmp_path: Path, password: str | None) -> None:
    r = run_cli(web, "execute", "-c", str(_task(tmp_path, registry, password)), timeout=300)
    assert r.returncode == 3, r.stdout + r.stderr
    out = r.stdout + r.stderr
    assert "errored" in out and registry in out and "unauthorized: authentication required" in out, out
