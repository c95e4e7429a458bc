"""Database tables and engine. SQLite file by default, PostgreSQL by URL; schema via Alembic."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"


class Base(DeclarativeBase):
    pass


class WorkerRow(Base):
    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    platform: Mapped[str] = mapped_column(String(64))
    tags: Mapped[list] = mapped_column(JSON, default=list)
    team: Mapped[str | None] = mapped_column(String(64), nullable=True)
    version: Mapped[str] = mapped_column(String(64), default="")
    baggageclaim_url: Mapped[str] = mapped_column(String(2048), default="")
    runtime_url: Mapped[str] = mapped_column(String(2048), default="")
    volume_driver: Mapped[str] = mapped_column(String(32), default="", server_default="")
    runtime: Mapped[str] = mapped_column(String(32), default="", server_default="")
    resource_types: Mapped[list] = mapped_column(JSON, default=list)
    boot_epoch: Mapped[str] = mapped_column(String(64))
    ephemeral: Mapped[bool] = mapped_column(Boolean, default=False)
    active_containers: Mapped[int] = mapped_column(Integer, default=0)
    active_volumes: Mapped[int] = mapped_column(Integer, default=0)
    active_tasks: Mapped[int] = mapped_column(Integer, default=0)
    max_tasks: Mapped[int] = mapped_column(Integer, default=8, server_default="8")
    state: Mapped[str] = mapped_column(String(16), index=True)
    # Unix seconds (float): portable across SQLite and PostgreSQL without timezone surprises.
    start_time: Mapped[float] = mapped_column(Float)
    last_heartbeat: Mapped[float] = mapped_column(Float, index=True)
    state_changed_at: Mapped[float] = mapped_column(Float)


class WorkerObjectRow(Base):
    """A container or volume that web knows lives on a worker (in one boot epoch of it)."""

    __tablename__ = "worker_objects"

    worker_name: Mapped[str] = mapped_column(
        String(64), ForeignKey("workers.name", ondelete="CASCADE"), primary_key=True, index=True
    )
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)  # container | volume
    handle: Mapped[str] = mapped_column(String(128), primary_key=True)
    boot_epoch: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Float)
    # what the reaper last reported: {"role": input|output|rootfs|cache|image|container, "build": id, …}
    properties: Mapped[dict] = mapped_column(JSON, default=dict, server_default="{}")
    last_reported: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    destroying: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")


class BuildRow(Base):
    """A one-off build: one task run, possibly over several attempts (requeues)."""

    __tablename__ = "builds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    config: Mapped[dict] = mapped_column(JSON)  # the validated task config
    config_text: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[list] = mapped_column(JSON, default=list)
    team: Mapped[str | None] = mapped_column(String(64), nullable=True)
    cache_key: Mapped[str] = mapped_column(String(128), default="")
    privileged: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    runtime: Mapped[str] = mapped_column(String(16), default="workers")
    worker_name: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    worker_epoch: Mapped[str | None] = mapped_column(String(64), nullable=True)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    requeues: Mapped[int] = mapped_column(Integer, default=0)
    requeue_budget: Mapped[int] = mapped_column(Integer, default=1)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    abort_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    inputs: Mapped[list] = mapped_column(JSON, default=list)  # names uploaded
    outputs: Mapped[list] = mapped_column(JSON, default=list)  # names produced
    log_offsets: Mapped[dict] = mapped_column(JSON, default=dict)  # "attempt:stream" -> bytes stored
    next_seq: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[float] = mapped_column(Float)
    queued_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    placed_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    image_ready_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    inputs_ready_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    # a pipeline build's task step runs as one of these: which job build, which step (its plan path and name)
    job_build_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("job_builds.id", ondelete="CASCADE", name="fk_builds_job_build_id"), nullable=True, index=True)
    step_path: Mapped[str] = mapped_column(String(512), default="", server_default="")
    step_name: Mapped[str] = mapped_column(String(128), default="", server_default="")
    # a resource script's run (check/in/out): its JSON request on stdin, its response on stdout; `resource_type`
    # (a type workers offer, or empty for a custom type's registry image) restricts placement
    stdin: Mapped[str | None] = mapped_column(Text, nullable=True)
    resource_type: Mapped[str] = mapped_column(String(64), default="", server_default="")
    # a pipeline task step's `image: ARTIFACT`: that artifact (linked as input IMAGE_INPUT) is the task's image
    image_input: Mapped[str] = mapped_column(String(128), default="", server_default="")
    # a step build's inputs, where each came from: input name -> {"build": id, "attempt": n, "output": name}
    # (the earlier step's build, its attempt that succeeded, and the output's name in it); placement prefers
    # the worker that ran them, and that worker mounts its own output volumes instead of downloading
    input_sources: Mapped[dict] = mapped_column(JSON, default=dict, server_default="{}")


class PipelineRow(Base):
    """A team's pipeline: the config as set (static vars applied; run-time vars left as ((var)))."""

    __tablename__ = "pipelines"
    __table_args__ = (UniqueConstraint("team", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    team: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(128))
    config: Mapped[dict] = mapped_column(JSON)
    config_text: Mapped[str] = mapped_column(Text, default="")
    version: Mapped[int] = mapped_column(Integer, default=1)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    archived: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


class JobRow(Base):
    """A job of a pipeline, kept by name across config versions (`active` false once a config drops it)."""

    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("pipeline_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    pipeline_id: Mapped[int] = mapped_column(Integer, ForeignKey("pipelines.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    config: Mapped[dict] = mapped_column(JSON)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    next_build_number: Mapped[int] = mapped_column(Integer, default=1)


class JobBuildRow(Base):
    """One build of a job (`pipeline/job #name`): the plan it runs (the job's config when it was created) and
    the state of each step, which `airside.web.plans` advances."""

    __tablename__ = "job_builds"
    __table_args__ = (UniqueConstraint("job_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(Integer, ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(32))  # "7", or "7.1" for the first rerun of #7
    number: Mapped[int] = mapped_column(Integer)
    rerun_of: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status: Mapped[str] = mapped_column(String(16), index=True)  # pending | started | succeeded | failed | …
    plan: Mapped[dict] = mapped_column(JSON)
    state: Mapped[dict] = mapped_column(JSON, default=dict)
    pipeline_version: Mapped[int] = mapped_column(Integer, default=1)
    created_by: Mapped[str] = mapped_column(String(64), default="")
    abort_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class ResourceConfigRow(Base):
    """A resource's type and source, shared by every resource with the same pair (one check for all of them,
    as Concourse dedupes checks), with its check state."""

    __tablename__ = "resource_configs"
    __table_args__ = (UniqueConstraint("team", "type", "source_hash"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    team: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(128))
    image: Mapped[dict] = mapped_column(JSON, default=dict)  # a custom type's image_resource; {} for a worker's type
    source_hash: Mapped[str] = mapped_column(String(64))
    source: Mapped[dict] = mapped_column(JSON)
    check_every: Mapped[float | None] = mapped_column(Float, nullable=True)  # the shortest of its resources'
    next_check_at: Mapped[float] = mapped_column(Float, default=0.0, index=True)
    last_checked: Mapped[float | None] = mapped_column(Float, nullable=True)
    check_error: Mapped[str] = mapped_column(Text, default="")
    failures: Mapped[int] = mapped_column(Integer, default=0)
    check_build_id: Mapped[int | None] = mapped_column(Integer, nullable=True)  # the check running now
    last_check_build_id: Mapped[int | None] = mapped_column(Integer, nullable=True)  # the last one (its log kept)
    next_order: Mapped[int] = mapped_column(Integer, default=1)


class ResourceVersionRow(Base):
    __tablename__ = "resource_versions"
    __table_args__ = (UniqueConstraint("config_id", "version_hash"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    config_id: Mapped[int] = mapped_column(Integer, ForeignKey("resource_configs.id", ondelete="CASCADE"), index=True)
    version: Mapped[dict] = mapped_column(JSON)
    version_hash: Mapped[str] = mapped_column(String(64))
    meta: Mapped[list] = mapped_column(JSON, default=list)  # [{"name": …, "value": …}] as the script returned it
    check_order: Mapped[int] = mapped_column(Integer)  # newer versions have higher numbers
    created_at: Mapped[float] = mapped_column(Float)


class ResourceRow(Base):
    """A resource of a pipeline, kept by name across config versions like jobs."""

    __tablename__ = "resources"
    __table_args__ = (UniqueConstraint("pipeline_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    pipeline_id: Mapped[int] = mapped_column(Integer, ForeignKey("pipelines.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    config: Mapped[dict] = mapped_column(JSON)
    config_id: Mapped[int | None] = mapped_column(Integer, ForeignKey("resource_configs.id"), nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    pinned_version_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    disabled_versions: Mapped[list] = mapped_column(JSON, default=list)  # version ids


class JobBuildResourceRow(Base):
    """A version a job build fetched (get) or produced (put): what `passed` and triggers look at."""

    __tablename__ = "job_build_resources"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_build_id: Mapped[int] = mapped_column(Integer, ForeignKey("job_builds.id", ondelete="CASCADE"), index=True)
    resource_id: Mapped[int] = mapped_column(Integer, ForeignKey("resources.id", ondelete="CASCADE"), index=True)
    version_id: Mapped[int] = mapped_column(Integer, ForeignKey("resource_versions.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))  # the step's name (get: the artifact)
    kind: Mapped[str] = mapped_column(String(8))  # get | put


class BuildEventRow(Base):
    """Build output and status changes, in order (seq per build)."""

    __tablename__ = "build_events"
    __table_args__ = (UniqueConstraint("build_id", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    build_id: Mapped[int] = mapped_column(Integer, ForeignKey("builds.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))  # log | status
    stream: Mapped[str] = mapped_column(String(16), default="")
    data: Mapped[str] = mapped_column(Text)
    at: Mapped[float] = mapped_column(Float)


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # noqa: ANN001
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


class DatabaseUnreachable(Exception):
    """The database did not answer within database_wait_timeout."""


def wait_until_reachable(engine: Engine, timeout: float, on_retry: Callable[[str, float], None]) -> None:
    """Connects until the database answers (a PostgreSQL that starts after web, as in a fresh deployment),
    backing off up to 5 s; `on_retry(error, delay)` reports each failure. Raises DatabaseUnreachable, naming
    the URL (password hidden) and the last error, once `timeout` has passed."""
    if engine.url.get_backend_name() == "sqlite":
        return  # a file: nothing to wait for (an unusable path fails at once, in migrate)
    deadline, delay = time.monotonic() + timeout, 0.5
    while True:
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return
        except OperationalError as e:
            error = str(e.orig or e).strip().splitlines()[0] if str(e.orig or e).strip() else type(e).__name__
            left = deadline - time.monotonic()
            if left <= 0:
                url = engine.url.render_as_string(hide_password=True)
                raise DatabaseUnreachable(f"database {url} unreachable for {timeout:g}s "
                                          f"(database_wait_timeout): {error}") from e
            on_retry(error, min(delay, left))
            time.sleep(min(delay, left))
            delay = min(delay * 2, 5.0)


def sessions(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    with factory() as s, s.begin():
        yield s


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def migrate(engine: Engine, revision: str = "head") -> None:
    command.upgrade(alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory(str(MIGRATIONS)).get_current_head()
