"""Fixtures shared by every test layer: a real PostgreSQL server, free ports, process helpers; in CI, the skip
guard (tools/ci/skipguard.py: a skip that tools/ci/skips.allow does not name fails the run)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from tools.ci import skipguard

from .pg import PostgresServer, PostgresUnavailable, free_port  # noqa: F401 - re-exported for tests


def pytest_configure(config: pytest.Config) -> None:
    skipguard.register(config)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server for the test session: $AIRSIDE_TEST_POSTGRES_URL, or one started here
    from Debian's postgresql package (see tests/pg.py)."""
    if url := os.environ.get("AIRSIDE_TEST_POSTGRES_URL"):
        yield url
        return
    try:
        server = PostgresServer.start()
    except PostgresUnavailable as e:
        pytest.fail(str(e))
    yield server.url
    server.stop()


_db_counter = iter(range(10_000))


@pytest.fixture
def fresh_postgres_db(postgres_url: str) -> str:
    """An empty database on the session's server, one per test."""
    import psycopg

    name = f"t{os.getpid()}_{next(_db_counter)}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return postgres_url.rsplit("/", 1)[0] + "/" + name
