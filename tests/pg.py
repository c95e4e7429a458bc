"""Start a throwaway PostgreSQL server from Debian's postgresql package (tests and benchmarks)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


class PostgresUnavailable(Exception):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    if initdb := shutil.which("initdb"):
        return Path(initdb).parent
    raise PostgresUnavailable("PostgreSQL is not installed: `apt-get install postgresql` (.ci/run does this)")


@dataclass
class PostgresServer:
    url: str
    base: Path
    proc: subprocess.Popen

    @classmethod
    def start(cls, port: int | None = None) -> PostgresServer:
        """initdb in a fresh dir, postgres on `port` (default: a free one) on loopback (as the postgres user
        when root)."""
        bindir = _bindir()
        # pytest's temp dirs are private to root; PostgreSQL runs as its own user, so give it its own dir.
        base = Path(tempfile.mkdtemp(prefix="airside-pg-"))
        data, sock = base / "data", base / "sock"
        sock.mkdir()
        as_pg: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(base, "postgres")
            shutil.chown(sock, "postgres")
            as_pg = ["runuser", "-u", "postgres", "--"]
        port = port or free_port()
        r = subprocess.run([*as_pg, str(bindir / "initdb"), "-D", str(data), "-U", "airside", "--auth=trust", "-E", "UTF8"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise PostgresUnavailable(f"initdb failed: {r.stderr[-2000:]}")
        logf = open(base / "postgres.log", "w")  # noqa: SIM115 - lives as long as the server
        proc = subprocess.Popen(
            [*as_pg, str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(sock), "-h", "127.0.0.1",
             "-c", "fsync=off", "-c", "max_connections=300"],
            stdout=subprocess.DEVNULL, stderr=logf,
        )
        deadline = time.monotonic() + 30
        while subprocess.run([str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                             capture_output=True).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise PostgresUnavailable(f"PostgreSQL did not start: {(base / 'postgres.log').read_text()[-2000:]}")
            time.sleep(0.2)
        subprocess.run([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "airside", "airside"],
                       check=True)
        return cls(f"postgresql://airside@127.0.0.1:{port}/airside", base, proc)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        shutil.rmtree(self.base, ignore_errors=True)
