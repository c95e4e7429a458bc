"""The `airside` command. Flags of every role are derived from the settings model (airside.config)."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.table import Table

from airside import __version__
from airside.config import CLIENT, WEB, WORKER, Settings, env_name, secret
from airside.core import auth, log
from airside.core.client import WebClient, WebError
from airside.core.options import load_settings, settings_options

err = Console(stderr=True, soft_wrap=True)


def _pop_settings(kwargs: dict[str, Any]) -> tuple[Settings, dict[str, Any]]:
    rest = {k: v for k, v in kwargs.items() if k not in Settings.model_fields}
    settings = load_settings(kwargs)
    log.configure(settings.log_level, settings.log_format)
    return settings, rest


def client_for(settings: Settings) -> WebClient:
    token = secret(settings.token)
    if token is None and (settings.data_dir / "token").exists():
        token = (settings.data_dir / "token").read_text().strip()
    if not token:
        raise click.UsageError(f"no token: set {env_name('token')} or --token (web prints where its token is)")
    return WebClient(settings.web_url, auth=auth.BearerAuth(token), ca_file=settings.tls_ca_file)


def _fail(e: WebError) -> NoReturn:
    err.print(f"[red]error:[/red] {e.message}")
    sys.exit(2 if e.status == 0 else 1)


class LazyGroup(click.Group):
    """Subsystem commands are imported only when run (or listed): `airside execute` stays quick to start."""

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy and name not in self.commands:
            module, _, attr = self.lazy[name].partition(":")
            self.add_command(getattr(importlib.import_module(module), attr), name)
        return super().get_command(ctx, name)


# Commands that live with their subsystem: name -> "module:attribute" (one line each).
SUBSYSTEM_COMMANDS = {
    "baggageclaim": "airside.baggageclaim.commands:baggageclaim",
    "volumes": "airside.baggageclaim.commands:volumes",
    "render": "airside.packaging.commands:render",
    "fetch-inputs": "airside.pod_steps:fetch_inputs",
    "upload-outputs": "airside.pod_steps:upload_outputs",
    "set-pipeline": "airside.pipeline_cli:set_pipeline",
    "pipelines": "airside.pipeline_cli:list_pipelines",
    "get-pipeline": "airside.pipeline_cli:get_pipeline",
    "destroy-pipeline": "airside.pipeline_cli:destroy_pipeline",
    "pause-pipeline": "airside.pipeline_cli:pause_pipeline",
    "unpause-pipeline": "airside.pipeline_cli:unpause_pipeline",
    "pause-job": "airside.pipeline_cli:pause_job",
    "unpause-job": "airside.pipeline_cli:unpause_job",
    "jobs": "airside.pipeline_cli:list_jobs",
    "trigger-job": "airside.pipeline_cli:trigger_job",
    "watch": "airside.pipeline_cli:watch",
    "rerun-build": "airside.pipeline_cli:rerun_build",
    "resources": "airside.resource_cli:list_resources",
    "resource-versions": "airside.resource_cli:resource_versions",
    "check-resource": "airside.resource_cli:check_resource",
    "pin-resource": "airside.resource_cli:pin_resource",
    "unpin-resource": "airside.resource_cli:unpin_resource",
    "disable-resource-version": "airside.resource_cli:disable_resource_version",
    "enable-resource-version": "airside.resource_cli:enable_resource_version",
}


@click.group(cls=LazyGroup, lazy=SUBSYSTEM_COMMANDS,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120})
@click.version_option(__version__, prog_name="airside")
def main() -> None:
    """airside runs CI tasks: web, workers, baggageclaim, and tasks as Kubernetes Jobs."""


# --- servers ---------------------------------------------------------------------------------------
@main.command()
@settings_options(WEB)
def web(**kwargs: Any) -> None:
    """Run web: API, scheduler and database."""
    from airside.web.app import TLSError, serve
    from airside.web.db import DatabaseUnreachable

    settings, _ = _pop_settings(kwargs)
    try:
        serve(settings)
    except TLSError as e:
        raise click.UsageError(str(e)) from None
    except DatabaseUnreachable as e:
        raise click.ClickException(str(e)) from None


@main.command()
@settings_options(WORKER)
def worker(**kwargs: Any) -> None:
    """Run a worker: beacon, volume server, runtime. SIGUSR1 lands, SIGUSR2 retires."""
    from airside.worker.main import ConfigError, run

    settings, _ = _pop_settings(kwargs)
    try:
        sys.exit(run(settings))
    except ConfigError as e:
        raise click.UsageError(str(e)) from None


@main.command()
@settings_options(WEB)
def migrate(**kwargs: Any) -> None:
    """Apply database migrations and exit."""
    from airside.web import db

    settings, _ = _pop_settings(kwargs)
    engine = db.make_engine(settings.resolved_database_url)
    db.migrate(engine)
    click.echo(f"database at migration {db.current_revision(engine)}")


@main.command()
@click.option("-o", "--out", "out", type=click.Path(path_type=Path), required=True, help="Directory to write keys to.")
@click.option("--force", is_flag=True, help="Overwrite existing files.")
def keygen(out: Path, force: bool) -> None:
    """Make credentials: an operator token, a worker token and a worker key pair.

    Files: token, worker-token, worker_key (private), authorized_worker_keys (public)."""
    out.mkdir(parents=True, exist_ok=True)
    pem, pub = auth.generate_keypair()
    files = {"token": auth.new_token() + "\n", "worker-token": auth.new_token() + "\n",
             "worker_key": pem.decode(), "authorized_worker_keys": pub + "\n"}
    for name, content in files.items():
        path = out / name
        if path.exists() and not force:
            raise click.UsageError(f"{path} exists (use --force to overwrite)")
        path.write_text(content)
        path.chmod(0o600 if name != "authorized_worker_keys" else 0o644)
        click.echo(f"wrote {path}")


# --- operator commands -------------------------------------------------------------------------------
@main.command()
@settings_options(CLIENT)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def workers(as_json: bool, **kwargs: Any) -> None:
    """List workers and their states."""
    settings, _ = _pop_settings(kwargs)
    try:
        with client_for(settings) as c:
            ws = c.workers()
    except WebError as e:
        _fail(e)
    if as_json:
        click.echo(json.dumps([w.model_dump(mode="json") for w in ws], indent=2))
        return
    table = Table("name", "state", "platform", "tags", "team", "containers", "volumes", "driver", "runtime",
                  "heartbeat", "version")
    for w in ws:
        table.add_row(w.name, str(w.state), w.platform, ",".join(w.tags) or "none", w.team or "none",
                      str(w.active_containers), str(w.active_volumes), w.volume_driver or "-", w.runtime or "-",
                      f"{w.heartbeat_age:.0f}s ago", w.version)
    Console().print(table)


def _worker_command(name: str, doc: str, call: str) -> None:
    @main.command(name=name, help=doc)
    @settings_options(CLIENT)
    @click.argument("worker_name")
    def _cmd(worker_name: str, **kwargs: Any) -> None:
        settings, _ = _pop_settings(kwargs)
        try:
            with client_for(settings) as c:
                result = getattr(c, call)(worker_name)
        except WebError as e:
            _fail(e)
        click.echo(f"{worker_name}: {result.state}" if result is not None else f"{worker_name}: pruned")


_worker_command("land-worker", "Land a worker: it finishes its work, then waits to come back under its name.", "land")
_worker_command("retire-worker", "Retire a worker: it finishes its work, then leaves the registry.", "retire")
_worker_command("prune-worker", "Remove a stalled or landed worker from the registry.", "prune")


@main.command()
@settings_options(CLIENT)
@click.option("-c", "--config", "config", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="Task config file (Concourse task schema).")
@click.option("-i", "--input", "inputs", multiple=True, metavar="NAME=DIR", help="Upload DIR as input NAME.")
@click.option("-o", "--output", "outputs", multiple=True, metavar="NAME=DIR", help="Download output NAME into DIR.")
@click.option("--tag", "build_tags", multiple=True, help="Run on a worker with this tag (repeatable).")
@click.option("-m", "--input-mapping", "input_mapping", multiple=True, metavar="TASK_INPUT=NAME",
              help="Feed task input TASK_INPUT from the directory given as -i NAME=DIR.")
@click.option("--image", default=None, metavar="REPO[:TAG]", help="Run in this registry image instead of the task's.")
@click.option("--include-ignored", is_flag=True,
              help="Upload files .gitignore ignores too (by default a git work tree is uploaded as git sees it).")
@click.option("-p", "--privileged", is_flag=True,
              help="Run the task privileged (the runtime's operator must allow it: allow_privileged_tasks).")
@click.option("-j", "--inputs-from", "inputs_from", default=None, metavar="PIPELINE/JOB",
              help="Inputs not given with -i come from the artifacts of this job's latest succeeded build.")
@click.argument("args", nargs=-1, metavar="[-- ARGS...]")
def execute(config: Path, inputs: tuple[str, ...], outputs: tuple[str, ...], build_tags: tuple[str, ...],
            input_mapping: tuple[str, ...], image: str | None, include_ignored: bool, privileged: bool,
            inputs_from: str | None, args: tuple[str, ...], **kwargs: Any) -> None:
    """Run a task once with local inputs, stream its logs, download its outputs; exits with the task's code.
    ARGS after `--` are appended to run.args; params that are null take their value from this environment."""
    from airside import execute as ex

    settings, _ = _pop_settings(kwargs)
    mapping = {k: str(v) for k, v in ex.parse_pairs(input_mapping, "input mapping").items()}
    try:
        with client_for(settings) as c:
            code = ex.run(c, config, ex.parse_pairs(inputs, "input"), ex.parse_pairs(outputs, "output"),
                          list(build_tags), input_mapping=mapping, image=image, args=args,
                          include_ignored=include_ignored, privileged=privileged, inputs_from=inputs_from)
    except WebError as e:
        _fail(e)
    sys.exit(code)


@main.command(name="validate-pipeline")
@click.option("-c", "--config", "config", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              required=True, help="Pipeline config file (Concourse pipeline schema).")
@click.option("-v", "--var", "var", multiple=True, metavar="NAME=STRING", help="Set a var to a string.")
@click.option("-y", "--yaml-var", "yaml_var", multiple=True, metavar="NAME=YAML", help="Set a var to a YAML value.")
@click.option("-l", "--load-vars-from", "load_vars_from", multiple=True,
              type=click.Path(path_type=Path, dir_okay=False, exists=True), help="Load vars from a YAML file.")
@click.option("-s", "--strict", is_flag=True, help="Fail on warnings too.")
def validate_pipeline(config: Path, var: tuple[str, ...], yaml_var: tuple[str, ...],
                      load_vars_from: tuple[Path, ...], strict: bool) -> None:
    """Check a pipeline config without a web: exit 0 ("looks good") or 1 listing every problem."""
    from airside.pipeline import PipelineConfigError, StaticVars, VarFlagError, load_pipeline_config
    from airside.task import TaskConfigError

    try:
        static = StaticVars.from_flags(var, yaml_var, [(str(p), p.read_text()) for p in load_vars_from])
    except VarFlagError as e:
        raise click.UsageError(str(e)) from None
    except TaskConfigError as e:
        raise click.UsageError("; ".join(str(p) for p in e.problems)) from None
    try:
        loaded = load_pipeline_config(config.read_text(), str(config), static)
    except PipelineConfigError as e:
        for w in e.warnings:
            click.echo(f"warning: {w}", err=True)
        for p in e.problems:
            click.echo(f"error: {p}", err=True)
        n = len(e.problems)
        click.echo(f"{config}: {n} problem{'s' if n != 1 else ''}: configuration invalid", err=True)
        sys.exit(1)
    for w in loaded.warnings:
        click.echo(f"warning: {w}", err=True)
    if loaded.unset:
        click.echo("vars not set (left for run time):")
        for name, lines in loaded.unset.items():
            click.echo(f"  (({name})) at line{'s' if len(lines) != 1 else ''} {', '.join(map(str, lines))}")
    if strict and loaded.warnings:
        click.echo(f"{config}: {len(loaded.warnings)} warning(s) with --strict: configuration invalid", err=True)
        sys.exit(1)
    click.echo("looks good")


def _job_arg(value: str | None) -> tuple[str, str] | None:
    if value is None:
        return None
    from airside.pipeline_cli import parse_job

    return parse_job(value)


@main.command()
@settings_options(CLIENT)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("-n", "--count", default=50, show_default=True, help="How many recent builds.")
@click.option("-j", "--job", "job", default=None, metavar="PIPELINE/JOB", callback=lambda _c, _p, v: _job_arg(v),
              help="List this job's builds instead of one-off builds.")
@click.option("--team", default="main", show_default=True, help="The team of -j's pipeline.")
def builds(as_json: bool, count: int, job: tuple[str, str] | None, team: str, **kwargs: Any) -> None:
    """List recent one-off builds with their phase timestamps, or (-j PIPELINE/JOB) a job's builds."""
    if job is not None:
        from airside.pipeline_cli import print_job_builds

        print_job_builds(kwargs, team, job, count, as_json)
        return
    settings, _ = _pop_settings(kwargs)
    try:
        with client_for(settings) as c:
            bs = c.builds(count)
    except WebError as e:
        _fail(e)
    if as_json:
        click.echo(json.dumps([b.model_dump(mode="json") for b in bs], indent=2))
        return

    def span(a: float | None, b: float | None) -> str:
        return f"{b - a:.1f}s" if a is not None and b is not None else "-"

    table = Table("id", "status", "worker", "attempt", "exit", "queued", "image", "inputs", "start", "run", "reason")
    for b in bs:
        table.add_row(str(b.id), str(b.status), b.worker_name or "-", str(b.attempt),
                      "-" if b.exit_code is None else str(b.exit_code), span(b.queued_at, b.placed_at),
                      span(b.placed_at, b.image_ready_at), span(b.image_ready_at, b.inputs_ready_at),
                      span(b.inputs_ready_at, b.started_at), span(b.started_at, b.finished_at), b.reason[:60])
    Console().print(table)


@main.command(name="abort-build")
@settings_options(CLIENT)
@click.argument("build_id", type=int, required=False)
@click.option("-j", "--job", "job", default=None, metavar="PIPELINE/JOB", callback=lambda _c, _p, v: _job_arg(v),
              help="Abort a build of this job (with -b) instead of a one-off build.")
@click.option("-b", "--build", "build", default=None, metavar="NAME", help="The job build to abort (with -j).")
@click.option("--team", default="main", show_default=True, help="The team of -j's pipeline.")
def abort_build(build_id: int | None, job: tuple[str, str] | None, build: str | None, team: str,
                **kwargs: Any) -> None:
    """Abort a build: `abort-build BUILD_ID` (a one-off build) or `abort-build -j PIPELINE/JOB -b NAME`.
    Queued builds end at once, running ones are stopped by their worker."""
    if job is not None and build is not None and build_id is None:
        from airside.pipeline_cli import abort_job_build

        abort_job_build(kwargs, team, job, build)
        return
    if build_id is None or job is not None or build is not None:
        raise click.UsageError("give either BUILD_ID (a one-off build) or -j PIPELINE/JOB -b NAME (a job build)")
    settings, _ = _pop_settings(kwargs)
    try:
        with client_for(settings) as c:
            click.echo(f"build {build_id}: {c.abort_build(build_id).status}")
    except WebError as e:
        _fail(e)


@main.command()
@settings_options(WEB, WORKER)
def quickstart(**kwargs: Any) -> None:
    """Run web (SQLite in data_dir) and one local worker together. Ctrl-C drains and exits."""
    from airside.quickstart import run

    settings, _ = _pop_settings(kwargs)
    sys.exit(run(settings))


if __name__ == "__main__":
    main()
