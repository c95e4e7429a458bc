"""docker-compose on the local engine: the rendered project starts web and a worker that registers, runs
`airside execute` of a sample task, and `docker compose stop worker` retires the worker (stop_signal)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from airside import __version__
from airside.config import Settings, env_name
from airside.packaging.render import render
from tests.procs import wait_for

ROOT = Path(__file__).resolve().parents[3]
IMAGE = f"airside:{__version__}"
POSTGRES_IMAGE = "postgres:15-bookworm"  # model.POSTGRES_IMAGE; built locally by tools/image/build-postgres.sh

pytestmark = pytest.mark.docker


def _run(*cmd: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, **kw)


def _compose_cmd() -> list[str] | None:
    if shutil.which("docker") and _run("docker", "compose", "version").returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose") and _run("docker-compose", "version").returncode == 0:
        return ["docker-compose"]
    return None


def _docker_usable() -> str | None:
    if not shutil.which("docker"):
        return "no docker CLI"
    if _run("docker", "info", timeout=30).returncode != 0:
        return "docker engine not running (tools/docker/dockerd-up.sh starts one)"
    if _compose_cmd() is None:
        return "neither `docker compose` nor `docker-compose` (apt-get install docker-compose)"
    return None


@pytest.fixture(scope="module")
def image() -> str:
    why = _docker_usable()
    if why:
        pytest.skip(why)
    # always rebuild from this checkout (cheap when the base image is cached): a stale image proves nothing
    done = _run("bash", str(ROOT / "tools/image/build.sh"), IMAGE, timeout=1800)
    if done.returncode != 0:
        pytest.fail(f"could not build {IMAGE}: {done.stderr[-2000:]}")
    return IMAGE


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return _run(sys.executable, "-m", "airside.cli", *args, env={**os.environ, **env}, timeout=120)


def _workers(env: dict[str, str]) -> list[dict[str, Any]]:
    """The registry as the CLI lists it; a CLI that fails raises (an empty list would make "the worker left"
    hold with web down)."""
    r = _cli(env, "workers", "--json")
    assert r.returncode == 0, f"airside workers exited {r.returncode}: {r.stderr[-1000:]}"
    return json.loads(r.stdout)


def _wait(pred: Any, what: str, timeout: float = 180) -> Any:
    """Polls every 2 s (each poll runs the CLI) until pred holds; a failing poll is retried and reported."""
    return wait_for(pred, timeout, what, interval=2)


@pytest.fixture(params=["http", "https"])
def project(request: pytest.FixtureRequest, image: str, tmp_path: Path):
    """`https`: web serves a certificate (host files the file mounts read-only) that names the `web` service;
    the worker and this host's CLI verify it with the CA."""
    port = _free_port()
    overrides: dict[str, Any] = {"web": {"service": {"port": port}},
                                 "airside": {"worker": {"drain_timeout": 20}}}
    client_tls: dict[str, str] = {}
    if request.param == "https":
        from tests.tlscerts import make_certs

        certs = make_certs(tmp_path / "tls", hosts=("web", "127.0.0.1", "localhost"))
        if os.geteuid() == 0:
            os.chown(certs.key, 10001, 10001)  # web runs as the image's airside user (uid 10001)
        else:
            certs.key.chmod(0o644)
        overrides["airside"]["web"] = {"tls_cert_file": str(certs.cert), "tls_key_file": str(certs.key)}
        overrides["airside"]["worker"]["tls_ca_file"] = str(certs.ca)
        client_tls = {env_name("tls_ca_file"): str(certs.ca)}
    # no registry here: the PostgreSQL image is built locally under the upstream tag the file names
    done = _run("bash", str(ROOT / "tools/image/build-postgres.sh"), POSTGRES_IMAGE, timeout=1800)
    if done.returncode != 0:
        pytest.fail(f"could not build {POSTGRES_IMAGE}: {done.stderr[-2000:]}")
    if "worker_runtime" in Settings.model_fields:
        overrides["airside"]["worker"]["worker_runtime"] = "process"  # no runc-in-docker needed for the sample
    out = tmp_path / "compose"
    render("compose", overrides, out)
    subprocess.run(["sh", str(out / "generate-secrets.sh")], check=True, capture_output=True)
    secrets = dict(line.split("=", 1) for line in (out / ".env").read_text().split())
    name = f"airside-test-{uuid.uuid4().hex[:8]}"
    compose = [*_compose_cmd(), "-p", name, "-f", str(out / "docker-compose.yml")]
    env = {"AIRSIDE_IMAGE": image}
    up = _run(*compose, "up", "-d", cwd=out, env={**os.environ, **env}, timeout=600)
    client_env = {env_name("web_url"): f"{request.param}://127.0.0.1:{port}",
                  env_name("token"): secrets[env_name("token")], env_name("data_dir"): str(tmp_path / "client"),
                  **client_tls}
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield compose, out, client_env, env
    finally:
        logs = _run(*compose, "logs", "--no-color", cwd=out, env={**os.environ, **env}, timeout=120)
        (tmp_path / "compose.log").write_text(logs.stdout + logs.stderr)
        _run(*compose, "down", "-v", "-t", "5", cwd=out, env={**os.environ, **env}, timeout=300)


def test_compose_up_registers_a_worker_runs_a_task_and_retires_on_stop(project: Any, tmp_path: Path) -> None:
    compose, out, client_env, env = project
    workers = _wait(lambda: [w for w in _workers(client_env) if w["state"] == "running"], "a running worker")
    assert len(workers) == 1

    task = tmp_path / "task.yml"
    task.write_text(textwrap.dedent("""
        platform: linux
        rootfs_uri: /
        outputs:
        - name: out
        run: {path: sh, args: [-c, "echo hello from compose > out/greeting; echo ran"]}
    """))
    r = _cli(client_env, "execute", "-c", str(task), "-o", f"out={tmp_path / 'result'}")
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "result" / "greeting").read_text() == "hello from compose\n"
    web_logs = _run(*compose, "logs", "--no-color", "web", cwd=out, env={**os.environ, **env}, timeout=120).stdout
    assert "postgresql+psycopg://" in web_logs  # the file's PostgreSQL, not a SQLite fallback

    stop = _run(*compose, "stop", "worker", cwd=out, env={**os.environ, **env}, timeout=300)
    assert stop.returncode == 0, stop.stderr
    # stop_signal SIGUSR2 retires: the worker leaves the registry (it is not landed, not stalled)
    names = {w["name"] for w in workers}
    _wait(lambda: not [w for w in _workers(client_env) if w["name"] in names], "the worker to retire", timeout=60)
