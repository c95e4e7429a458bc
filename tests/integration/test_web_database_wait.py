"""web started before its PostgreSQL waits for it (logging each retry) instead of crash-looping, and gives
up after database_wait_timeout with an error that names the database (never its password)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.pg import PostgresServer, PostgresUnavailable, free_port
from tests.procs import Proc, WebProc, cli_env, wait_for

pytestmark = pytest.mark.postgres


def test_web_waits_for_a_database_that_starts_later(tmp_path: Path) -> None:
    port = free_port()
    web = WebProc(tmp_path, database_url=f"postgresql://airside@127.0.0.1:{port}/airside", database_wait_timeout=120)
    Proc.start(web)  # not WebProc.start: it would wait for health
    server = None
    try:
        wait_for(lambda: "waiting for the database" in web.output(), 60, "web logging that it waits")
        assert web.alive()
        with pytest.raises(httpx.TransportError):
            httpx.get(web.url + "/healthz", timeout=1)
        try:
            server = PostgresServer.start(port=port)
        except PostgresUnavailable as e:
            pytest.skip(str(e))
        wait_for(lambda: httpx.get(web.url + "/readyz", timeout=1).status_code == 200, 60,
                 f"web ready once PostgreSQL is up\n{web.output()[-2000:]}")
        assert web.client().workers() == []  # migrated and serving
    finally:
        web.stop()
        if server is not None:
            server.stop()


def test_web_gives_up_naming_the_database_but_not_its_password(tmp_path: Path) -> None:
    port = free_port()
    web = WebProc(tmp_path, database_url=f"postgresql://ci:s3cret-pw@127.0.0.1:{port}/airside",
                  database_wait_timeout=2)
    done = subprocess.run([sys.executable, "-m", "airside.cli", "web"], env=cli_env(web.settings), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert f"127.0.0.1:{port}/airside" in done.stderr and "database_wait_timeout" in done.stderr, done.stderr
    assert "s3cret-pw" not in done.stderr + done.stdout
