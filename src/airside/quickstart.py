"""`airside quickstart`: web on SQLite in data_dir plus one local worker, as child processes.

Ctrl-C (or SIGTERM) retires the worker — it finishes its work and leaves the registry — and then
stops web. A second Ctrl-C stops both at once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx

from airside.config import Settings, env_name, secret
from airside.core import auth, log

LOG = log.get("airside.quickstart")


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    for name, value in settings.model_dump(mode="json").items():
        if value is None or name in ("token", "worker_token"):
            continue
        env[env_name(name)] = ",".join(value) if isinstance(value, list) else str(value)
    env.update(extra)
    return env


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"web exited with {proc.returncode} before it became healthy")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"web did not answer {url}/healthz within {timeout:.0f}s")


def run(settings: Settings) -> int:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    token = secret(settings.token) or auth.ensure_secret_file(settings.data_dir / "token")
    worker_token = secret(settings.worker_token) or auth.ensure_secret_file(settings.data_dir / "worker-token")
    web_url = f"http://{settings.bind_host}:{settings.bind_port}"
    secrets_env = {env_name("token"): token, env_name("worker_token"): worker_token}
    exe = [sys.executable, "-m", "airside.cli"]
    web = subprocess.Popen([*exe, "web"], env=_env(settings, **secrets_env), start_new_session=True)
    worker: subprocess.Popen | None = None
    stopping = {"count": 0}

    def on_signal(signum: int, _frame: object) -> None:
        stopping["count"] += 1
        if worker is not None and worker.poll() is None:
            worker.send_signal(signal.SIGUSR2)  # retire; a second one means stop now
        LOG.info("stopping", signal=signal.Signals(signum).name, time=stopping["count"])

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        _wait_healthy(web_url, web)
        worker_env = _env(settings, **secrets_env, **{env_name("web_url"): web_url, env_name("ephemeral"): "true"})
        worker = subprocess.Popen([*exe, "worker"], env=worker_env, start_new_session=True)
        print(f"\nairside is up\n  web:    {web_url}  (API docs: {web_url}/docs)\n  token:  {token}\n"
              f"  try:    AIRSIDE_TOKEN={token} AIRSIDE_WEB_URL={web_url} airside workers\n"
              f"  stop:   Ctrl-C (the worker retires, then web stops)\n", flush=True)
        while stopping["count"] == 0:
            if web.poll() is not None or worker.poll() is not None:
                LOG.error("a quickstart process exited", web=web.poll(), worker=worker.poll())
                return 1
            time.sleep(0.2)
        worker.wait()
        return 0
    finally:
        for proc in (worker, web):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
