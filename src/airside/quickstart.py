"""`airside quickstart`: web on SQLite in data_dir plus one local worker, as child processes, then a
sample task run once with `airside execute` and a sample pipeline set and triggered (`set-pipeline`,
`unpause-pipeline`, `trigger-job -w`).

The worker uses the `process` runtime unless `--worker-runtime` is given: it needs no image, but it
does not isolate tasks (the worker says so loudly). `--worker-runtime oci` needs root, runc and a
task image (`rootfs_uri` or `image_resource`).

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

from airside.config import Settings, env_name, env_text, secret
from airside.core import auth, log

LOG = log.get("airside.quickstart")


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    """The children's environment: the settings this process was given (flags or env), nothing more,
    so web and the worker apply the same defaults as any other deployment."""
    env = dict(os.environ)
    given = settings.model_dump(mode="json", include=settings.model_fields_set - {"token", "worker_token"})
    for name, value in given.items():
        if value is not None:
            env[env_name(name)] = env_text(name, value)
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


SAMPLE_TASK = """\
# A sample Concourse-format task: lists its input and writes an output.
platform: linux
rootfs_uri: /
inputs:
- name: sample-input
outputs:
- name: sample-output
params:
  GREETING: hello from airside
run:
  path: sh
  args:
  - -c
  - |
    echo "$GREETING"
    echo "input has: $(ls sample-input | tr '\\n' ' ')"
    date > sample-output/ran-at
"""


SAMPLE_PIPELINE = """\
# A sample Concourse-format pipeline: one job whose plan makes an artifact in two parallel steps and
# hands it to a third; `airside trigger-job -j sample/hello -w` runs it and follows every step's log.
jobs:
- name: hello
  plan:
  - in_parallel:
    - task: make-greeting
      config:
        platform: linux
        rootfs_uri: /
        outputs: [{name: greeting}]
        run: {path: sh, args: [-c, 'echo "hello from a pipeline" > greeting/text']}
    - task: say-when
      config:
        platform: linux
        rootfs_uri: /
        run: {path: sh, args: [-c, 'echo "started at $(date)"']}
  - task: show-greeting
    config:
      platform: linux
      rootfs_uri: /
      inputs: [{name: greeting}]
      run: {path: cat, args: [greeting/text]}
    ensure:
      task: tidy-up
      config:
        platform: linux
        rootfs_uri: /
        run: {path: echo, args: [an ensure hook runs whatever happened]}
"""


def run_sample_pipeline(settings: Settings, exe: list[str], env: dict[str, str]) -> int:
    """Sets the sample pipeline, unpauses it and triggers its job, following the build (fly's verbs)."""
    sample = settings.data_dir / "sample"
    sample.mkdir(parents=True, exist_ok=True)
    (sample / "pipeline.yml").write_text(SAMPLE_PIPELINE)
    for args in (["set-pipeline", "-p", "sample", "-c", str(sample / "pipeline.yml"), "-n"],
                 ["unpause-pipeline", "-p", "sample"]):
        code = subprocess.call([*exe, *args], env=env)
        if code != 0:
            return code
    print("running the sample pipeline: airside trigger-job -j sample/hello -w", flush=True)
    return subprocess.call([*exe, "trigger-job", "-j", "sample/hello", "-w"], env=env)


def _wait_worker(url: str, token: str, name: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the worker exited with {proc.returncode} before it registered")
        try:
            ws = httpx.get(f"{url}/api/v1/workers/{name}", headers={"Authorization": f"Bearer {token}"}, timeout=2)
            if ws.status_code == 200 and ws.json()["state"] == "running":
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"worker {name} did not register within {timeout:.0f}s")


def run_sample(settings: Settings, exe: list[str], env: dict[str, str]) -> int:
    """Writes the sample task and runs it once with `airside execute`, as a newcomer would."""
    sample = settings.data_dir / "sample"
    (sample / "sample-input").mkdir(parents=True, exist_ok=True)
    (sample / "sample-input" / "README").write_text("an input uploaded by airside execute\n")
    (sample / "task.yml").write_text(SAMPLE_TASK)
    print(f"running the sample task: airside execute -c {sample / 'task.yml'} "
          f"-i sample-input={sample / 'sample-input'} -o sample-output={sample / 'output'}", flush=True)
    return subprocess.call([*exe, "execute", "-c", str(sample / "task.yml"), "-i",
                            f"sample-input={sample / 'sample-input'}", "-o", f"sample-output={sample / 'output'}"],
                           env=env)


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
        runtime = settings.worker_runtime if "worker_runtime" in settings.model_fields_set else "process"
        worker_env = _env(settings, **secrets_env, **{env_name("web_url"): web_url, env_name("ephemeral"): "true",
                                                      env_name("worker_runtime"): runtime})
        worker = subprocess.Popen([*exe, "worker"], env=worker_env, start_new_session=True)
        _wait_worker(web_url, token, settings.worker_name, worker)
        client_env = {**os.environ, env_name("web_url"): web_url, env_name("token"): token}
        code = run_sample(settings, exe, client_env)
        print(f"sample task exited with {code}", flush=True)
        code = run_sample_pipeline(settings, exe, client_env)
        print(f"sample pipeline exited with {code}", flush=True)
        print(f"\nairside is up\n  web:    {web_url}  (API docs: {web_url}/docs)\n  token:  {token}\n"
              f"  try:    AIRSIDE_TOKEN={token} AIRSIDE_WEB_URL={web_url} airside workers\n"
              f"          AIRSIDE_TOKEN={token} AIRSIDE_WEB_URL={web_url} airside trigger-job -j sample/hello -w\n"
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
