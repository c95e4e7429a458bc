import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.pg import free_port
from tests.procs import wait_for


def test_quickstart_runs_web_and_a_worker_and_drains_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "qs.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "airside.cli", "quickstart", "--data-dir", str(tmp_path / "data"), "--bind-port", str(port),
         "--baggageclaim-bind-port", str(free_port()), "--heartbeat-interval", "0.3", "--log-format", "json"],
        stdout=open(log, "w"), stderr=subprocess.STDOUT)
    try:
        token = (wait_for(lambda: (tmp_path / "data" / "token").exists(), what="token file") and
                 (tmp_path / "data" / "token").read_text().strip())
        url = f"http://127.0.0.1:{port}"

        def running() -> bool:
            ws = httpx.get(url + "/api/v1/workers", headers={"Authorization": f"Bearer {token}"}).json()
            return len(ws) == 1 and ws[0]["state"] == "running" and ws[0]["ephemeral"]

        wait_for(running, 60, "the quickstart worker running")
        wait_for(lambda: "sample task exited with" in log.read_text(), 120, "the sample task")
        out = log.read_text()
        assert "hello from airside" in out and "input has: README" in out
        assert "sample task exited with 0" in out
        assert (tmp_path / "data" / "sample" / "output" / "ran-at").exists()  # the output came back
        wait_for(lambda: "sample pipeline exited with" in log.read_text(), 120, "the sample pipeline")
        out = log.read_text()
        assert "sample pipeline exited with 0" in out
        assert "hello from a pipeline" in out  # one step's output read by the next, through trigger-job -w
        assert "an ensure hook runs whatever happened" in out
        wait_for(lambda: "airside is up" in log.read_text(), 30, "the banner")
        out = log.read_text()
        assert f"web:    {url}" in out and f"token:  {token}" in out
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
        out = log.read_text()
        assert '"event": "retired"' in out  # the worker drained and left before web stopped
        assert not httpx_alive(url)
    finally:
        if proc.poll() is None:
            proc.kill()


def httpx_alive(url: str) -> bool:
    try:
        httpx.get(url + "/healthz", timeout=1)
        return True
    except httpx.TransportError:
        return False
