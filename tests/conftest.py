"""Fixtures shared by every test layer: a real PostgreSQL server, free ports, process helpers."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server for the test session: $AIRSIDE_TEST_POSTGRES_URL, or one started here
    from Debian's postgresql package (initdb in a temp dir, on loopback, as the postgres user)."""
    if url := os.environ.get("AIRSIDE_TEST_POSTGRES_URL"):
        yield url
        return
    bindir = _pg_bin()
    if bindir is None:
        pytest.fail("PostgreSQL is not installed: `apt-get install postgresql` (or run .ci/run, which does)")
    # pytest's temp dirs are private to root; PostgreSQL runs as its own user, so give it its own dir.
    base = Path(tempfile.mkdtemp(prefix="airside-pg-"))
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        shutil.chown(sock, "postgres")
    port = free_port()
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run([*as_pg, str(bindir / "initdb"), "-D", str(data), "-U", "airside", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True)
    proc = subprocess.Popen(
        [*as_pg, str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(sock), "-h", "127.0.0.1",
         "-c", "fsync=off", "-c", "max_connections=300"],
        stdout=subprocess.DEVNULL, stderr=open(base / "postgres.log", "w"),
    )
    deadline = time.monotonic() + 30
    while subprocess.run([str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                         capture_output=True).returncode != 0:
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"PostgreSQL did not start: {(base / 'postgres.log').read_text()[-2000:]}")
        time.sleep(0.2)
    subprocess.run([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "airside", "airside"], check=True)
    yield f"postgresql://airside@127.0.0.1:{port}/airside"
    proc.terminate()
    proc.wait(30)
    shutil.rmtree(base, ignore_errors=True)


_db_counter = iter(range(10_000))


@pytest.fixture
def fresh_postgres_db(postgres_url: str) -> str:
    """An empty database on the session's server, one per test."""
    import psycopg

    name = f"t{os.getpid()}_{next(_db_counter)}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return postgres_url.rsplit("/", 1)[0] + "/" + name
