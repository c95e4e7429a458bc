"""Real `airside web` / `airside worker` processes for tests, on loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from airside.core.auth import BearerAuth
from airside.core.client import WebClient, tls_verify

from .pg import free_port


def wait_for(cond: Callable[[], Any], timeout: float = 20.0, what: str = "condition", interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = cond()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - keep polling; report the last error on timeout
            last_exc = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last_exc!r})" if last_exc else ""))


def cli_env(settings: dict[str, Any]) -> dict[str, str]:
    """The environment for an `airside` process with these settings (AIRSIDE_* from the caller dropped)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRSIDE_")}
    for k, v in settings.items():
        if v is not None:
            env["AIRSIDE_" + k.upper()] = ",".join(v) if isinstance(v, list) else str(v)
    env.setdefault("AIRSIDE_LOG_FORMAT", "json")
    return env


class Proc:
    def __init__(self, args: list[str], settings: dict[str, Any], log: Path) -> None:
        self.args, self.settings, self.log = args, settings, log
        self.proc: subprocess.Popen | None = None

    def start(self) -> Proc:
        self.proc = subprocess.Popen([sys.executable, "-m", "airside.cli", *self.args], env=cli_env(self.settings),
                                     stdout=open(self.log, "a"), stderr=subprocess.STDOUT)
        return self

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.alive():
            self.proc.kill()  # type: ignore[union-attr]
            self.proc.wait(10)  # type: ignore[union-attr]

    def output(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


class WebProc(Proc):
    TOKEN = "operator-token-for-tests"
    WORKER_TOKEN = "worker-token-for-tests"

    def __init__(self, tmp: Path, database_url: str = "", ca_file: Path | None = None, **settings: Any) -> None:
        """With tls_cert_file/tls_key_file set, web serves HTTPS; `ca_file` is what verifies it."""
        self.port = free_port()
        base = {"data_dir": tmp / "web", "bind_port": self.port, "database_url": database_url, "token": self.TOKEN,
                "worker_token": self.WORKER_TOKEN, "heartbeat_ttl": 2.0, "sweep_interval": 0.2}
        super().__init__(["web"], {**base, **settings}, tmp / f"web-{self.port}.log")
        self.ca_file = ca_file
        scheme = "https" if settings.get("tls_cert_file") else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"

    def start(self) -> WebProc:
        super().start()
        wait_for(lambda: self._healthy(), 60, f"web healthy at {self.url}\n{self.output()[-3000:]}")
        return self

    def _healthy(self) -> bool:
        if not self.alive():
            raise AssertionError(f"web exited: {self.output()[-3000:]}")
        return httpx.get(self.url + "/readyz", timeout=1, verify=tls_verify(self.url, self.ca_file)).status_code == 200

    def client(self, token: str | None = None) -> WebClient:
        return WebClient(self.url, auth=BearerAuth(token or self.TOKEN), ca_file=self.ca_file)

    def restart(self) -> None:
        self.stop()
        self.start()


class WorkerProc(Proc):
    def __init__(self, tmp: Path, web: WebProc, name: str, work_dir: Path | None = None, **settings: Any) -> None:
        base = {"worker_name": name, "web_url": web.url, "worker_token": web.WORKER_TOKEN, "tls_ca_file": web.ca_file,
                "data_dir": tmp / f"worker-{name}", "work_dir": work_dir or tmp / f"worker-{name}" / "work",
                "heartbeat_interval": 0.3, "drain_timeout": 10, "baggageclaim_bind_port": 0,
                "baggageclaim_driver": "naive", "worker_runtime": "process", "reaper_interval": 1.0}
        super().__init__(["worker"], {**base, **settings}, tmp / f"worker-{name}.log")
        self.name = name


def state_of(client: WebClient, name: str) -> str | None:
    for w in client.workers():
        if w.name == name:
            return str(w.state)
    return None


SIGS = signal


def run_cli(web: WebProc, *args: str, cwd: Path | None = None, timeout: float = 120,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Runs an `airside` client command against web as the operator (with `env` added to its environment)."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AIRSIDE_")}, **(env or {}),
           "AIRSIDE_WEB_URL": web.url, "AIRSIDE_TOKEN": web.TOKEN, "COLUMNS": "200",
           "AIRSIDE_DATA_DIR": str(Path(web.settings["data_dir"]).parent / "cli"),
           **({"AIRSIDE_TLS_CA_FILE": str(web.ca_file)} if web.ca_file else {})}
    return subprocess.run([sys.executable, "-m", "airside.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)
