"""The pipeline commands, in fly's words: set-pipeline, pipelines, get-pipeline, destroy-pipeline,
pause-/unpause-pipeline, pause-/unpause-job, jobs, trigger-job, watch, rerun-build (and the `-j` forms of
`builds` and `abort-build`, which airside.cli keeps for one-off builds too).

    airside set-pipeline -p P -c pipeline.yml [-v k=v] [-y k=yaml] [-l vars.yml] [-n]
    airside trigger-job -j P/J -w          # follows every step's log, prefixed [step]

A pipeline is named by `-p P` and a job by `-j P/J`, in team `--team` (default main). `set-pipeline`
validates locally first (as `validate-pipeline`), shows the stored config against the new one as a unified
diff (YAML, keys sorted, static vars applied), asks unless `-n`, and sends the version it diffed against:
web refuses (409) when someone set the pipeline in between. `watch` and `-w` exit as `airside execute`
does: 0 succeeded, 1 failed, 3 errored, 130 aborted (Ctrl-C aborts the build).
"""

from __future__ import annotations

import difflib
import json
import signal
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NoReturn

import click
import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from airside.cli import _fail, _pop_settings, client_for
from airside.config import CLIENT
from airside.core.client import WebClient, WebError
from airside.core.options import settings_options
from airside.core.schemas import JobBuild, JobBuildStatus, PipelineSet
from airside.execute import EXIT_ABORTED, EXIT_ERRORED
from airside.pipeline import (
    LoadedPipeline,
    PipelineConfigError,
    StaticVars,
    VarFlagError,
    load_pipeline_config,
)
from airside.task import TaskConfigError

err = Console(stderr=True, soft_wrap=True)
DEFAULT_TEAM = "main"
EXIT_CODES = {JobBuildStatus.succeeded: 0, JobBuildStatus.failed: 1, JobBuildStatus.errored: EXIT_ERRORED,
              JobBuildStatus.aborted: EXIT_ABORTED}


# --- options ---------------------------------------------------------------------------------------------
def _team_option(fn: Callable) -> Callable:
    return click.option("--team", default=DEFAULT_TEAM, show_default=True, help="The pipeline's team.")(fn)


def _pipeline_option(fn: Callable) -> Callable:
    return _team_option(click.option("-p", "--pipeline", "pipeline", required=True, metavar="PIPELINE",
                                     help="The pipeline.")(fn))


def parse_job(value: str) -> tuple[str, str]:
    """`PIPELINE/JOB` → (pipeline, job)."""
    pipeline, slash, job = value.partition("/")
    if not slash or not pipeline or not job:
        raise click.BadParameter(f"{value!r}: expected PIPELINE/JOB")
    return pipeline, job


def _job_option(fn: Callable) -> Callable:
    return _team_option(click.option("-j", "--job", "job", required=True, metavar="PIPELINE/JOB",
                                     callback=lambda _c, _p, v: parse_job(v), help="The job.")(fn))


def _var_options(fn: Callable) -> Callable:
    fn = click.option("-l", "--load-vars-from", "load_vars_from", multiple=True,
                      type=click.Path(path_type=Path, dir_okay=False, exists=True), help="Load vars from a YAML file.")(fn)
    fn = click.option("-y", "--yaml-var", "yaml_var", multiple=True, metavar="NAME=YAML",
                      help="Set a var to a YAML value.")(fn)
    return click.option("-v", "--var", "var", multiple=True, metavar="NAME=STRING", help="Set a var to a string.")(fn)


def _json_option(fn: Callable) -> Callable:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(fn)


def _print_json(items: Iterable[Any]) -> None:
    click.echo(json.dumps([i.model_dump(mode="json") for i in items], indent=2))


def _run(kwargs: dict[str, Any], call: Callable[[WebClient], Any]) -> Any:
    settings, _ = _pop_settings(kwargs)
    try:
        with client_for(settings) as c:
            return call(c)
    except WebError as e:
        _fail(e)


def _ago(at: float | None) -> str:
    return "-" if at is None else f"{max(0.0, time.time() - at):.0f}s ago"


def _span(a: float | None, b: float | None) -> str:
    return f"{b - a:.1f}s" if a is not None and b is not None else "-"


# --- set-pipeline ------------------------------------------------------------------------------------------
def load_locally(config: Path, var: tuple[str, ...], yaml_var: tuple[str, ...],
                 load_vars_from: tuple[Path, ...]) -> tuple[LoadedPipeline, StaticVars, list[tuple[str, str]]]:
    """Validates as validate-pipeline does; on problems prints them and exits 1 (a bad -v/-y/-l: usage, 2)."""
    files = [(str(p), p.read_text()) for p in load_vars_from]
    try:
        static = StaticVars.from_flags(var, yaml_var, files)
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
        click.echo(f"{config}: {n} problem{'s' if n != 1 else ''}: configuration invalid, nothing set", err=True)
        sys.exit(1)
    for w in loaded.warnings:
        click.echo(f"warning: {w}", err=True)
    return loaded, static, files


def config_yaml(config: dict | None) -> str:
    """How set-pipeline shows a config in its diff: YAML with sorted keys."""
    return "" if config is None else yaml.safe_dump(config, sort_keys=True, default_flow_style=False, width=120)


def config_diff(old: dict | None, new: dict, old_name: str, new_name: str) -> list[str]:
    return list(difflib.unified_diff(config_yaml(old).splitlines(keepends=True), config_yaml(new).splitlines(keepends=True),
                                     old_name, new_name))


def _print_diff(lines: list[str]) -> None:
    for line in lines:
        colour = "green" if line.startswith("+") and not line.startswith("+++") else (
            "red" if line.startswith("-") and not line.startswith("---") else None)
        click.echo(click.style(line.rstrip("\n"), fg=colour) if colour else line.rstrip("\n"))


@click.command(name="set-pipeline")
@settings_options(CLIENT)
@_pipeline_option
@click.option("-c", "--config", "config", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              required=True, help="Pipeline config file (Concourse pipeline schema).")
@_var_options
@click.option("-n", "--non-interactive", "non_interactive", is_flag=True, help="Apply without asking.")
def set_pipeline(pipeline: str, team: str, config: Path, var: tuple[str, ...], yaml_var: tuple[str, ...],
                 load_vars_from: tuple[Path, ...], non_interactive: bool, **kwargs: Any) -> None:
    """Create or update a pipeline: validates locally, shows the diff against what web has, asks (unless -n).
    A new pipeline starts paused."""
    loaded, static, files = load_locally(config, var, yaml_var, load_vars_from)

    def go(c: WebClient) -> None:
        try:
            stored = c.pipeline_config(team, pipeline)
        except WebError as e:
            if e.status != 404:
                raise
            stored = None
        diff = config_diff(stored.config if stored else None, loaded.data,
                           f"{pipeline} (version {stored.version})" if stored else "/dev/null", str(config))
        if not diff:
            click.echo("no changes to apply")
            return
        _print_diff(diff)
        if not non_interactive and not click.confirm("apply configuration?", default=False):
            click.echo("bailing out")
            return
        result = c.set_pipeline(team, pipeline, PipelineSet(
            config=config.read_text(), filename=str(config), vars=static.flags, var_files=files,
            version=stored.version if stored else 0))
        for w in result.warnings:
            click.echo(f"warning: {w}", err=True)
        p = result.pipeline
        click.echo(f"pipeline created! (version {p.version})" if result.created else f"configuration updated (version {p.version})")
        if p.paused:
            click.echo(f"the pipeline is paused: to run it, `airside unpause-pipeline -p {pipeline}`"
                       + (f" --team {team}" if team != DEFAULT_TEAM else ""))

    _run(kwargs, go)


# --- pipelines -----------------------------------------------------------------------------------------------
@click.command(name="pipelines")
@settings_options(CLIENT)
@_team_option
@_json_option
def list_pipelines(team: str, as_json: bool, **kwargs: Any) -> None:
    """List the team's pipelines."""
    ps = _run(kwargs, lambda c: c.pipelines(team))
    if as_json:
        _print_json(ps)
        return
    table = Table("name", "paused", "version", "jobs", "updated")
    for p in ps:
        table.add_row(p.name, "yes" if p.paused else "no", str(p.version), str(len(p.jobs)), _ago(p.updated_at))
    Console().print(table)


@click.command(name="get-pipeline")
@settings_options(CLIENT)
@_pipeline_option
@_json_option
def get_pipeline(pipeline: str, team: str, as_json: bool, **kwargs: Any) -> None:
    """Print a pipeline's config as web stores it (static vars applied), as YAML or JSON."""
    view = _run(kwargs, lambda c: c.pipeline_config(team, pipeline))
    click.echo(json.dumps(view.config, indent=2) if as_json else config_yaml(view.config).rstrip("\n"))


@click.command(name="destroy-pipeline")
@settings_options(CLIENT)
@_pipeline_option
@click.option("-n", "--non-interactive", "non_interactive", is_flag=True, help="Destroy without asking.")
def destroy_pipeline(pipeline: str, team: str, non_interactive: bool, **kwargs: Any) -> None:
    """Destroy a pipeline with its jobs, builds and their logs (running builds are stopped)."""
    if not non_interactive and not click.confirm(
            f"!!! this will remove all data for pipeline `{pipeline}`\n\nare you sure?", default=False):
        click.echo("bailing out")
        return
    _run(kwargs, lambda c: c.destroy_pipeline(team, pipeline))
    click.echo(f"`{pipeline}` deleted")


def _pause_command(name: str, doc: str, call: str, done: str) -> click.Command:
    @click.command(name=name, help=doc)
    @settings_options(CLIENT)
    @_pipeline_option
    def _cmd(pipeline: str, team: str, **kwargs: Any) -> None:
        _run(kwargs, lambda c: getattr(c, call)(team, pipeline))
        click.echo(f"{done} '{pipeline}'")

    return _cmd


pause_pipeline = _pause_command("pause-pipeline", "Pause a pipeline: no new build of its jobs starts.",
                                "pause_pipeline", "paused")
unpause_pipeline = _pause_command("unpause-pipeline", "Unpause a pipeline: its pending builds start.",
                                  "unpause_pipeline", "unpaused")


def _pause_job_command(name: str, doc: str, call: str, done: str) -> click.Command:
    @click.command(name=name, help=doc)
    @settings_options(CLIENT)
    @_job_option
    def _cmd(job: tuple[str, str], team: str, **kwargs: Any) -> None:
        _run(kwargs, lambda c: getattr(c, call)(team, *job))
        click.echo(f"{done} '{job[1]}'")

    return _cmd


pause_job = _pause_job_command("pause-job", "Pause a job: its new builds wait.", "pause_job", "paused")
unpause_job = _pause_job_command("unpause-job", "Unpause a job.", "unpause_job", "unpaused")


# --- jobs and builds ------------------------------------------------------------------------------------------
@click.command(name="jobs")
@settings_options(CLIENT)
@_pipeline_option
@_json_option
def list_jobs(pipeline: str, team: str, as_json: bool, **kwargs: Any) -> None:
    """List a pipeline's jobs with their latest build."""
    js = _run(kwargs, lambda c: c.jobs(team, pipeline))
    if as_json:
        _print_json(js)
        return
    table = Table("name", "paused", "latest", "status", "next")
    for j in js:
        table.add_row(j.name, "yes" if j.paused else "no", f"#{j.latest.name}" if j.latest else "-",
                      str(j.latest.status) if j.latest else "n/a", f"#{j.next_build}")
    Console().print(table)


def print_job_builds(kwargs: dict[str, Any], team: str, job: tuple[str, str], count: int, as_json: bool) -> None:
    """`airside builds -j P/J`: the job's builds, newest first."""
    bs = _run(kwargs, lambda c: c.job_builds(team, *job, limit=count))
    if as_json:
        _print_json(bs)
        return
    table = Table("build", "status", "by", "created", "wait", "run", "steps", "reason")
    for b in bs:
        table.add_row(f"{b.pipeline}/{b.job} #{b.name}", str(b.status), b.created_by, _ago(b.created_at),
                      _span(b.created_at, b.started_at), _span(b.started_at, b.finished_at),
                      ", ".join(f"{s.name or s.path}:{s.status}" for s in b.steps) or "-", b.reason[:60])
    Console().print(table)


def abort_job_build(kwargs: dict[str, Any], team: str, job: tuple[str, str], build: str) -> None:
    """`airside abort-build -j P/J -b NAME`."""
    b = _run(kwargs, lambda c: c.abort_job_build(team, *job, build))
    click.echo(f"{b.pipeline}/{b.job} #{b.name}: {'abort requested' if b.status == JobBuildStatus.started else b.status}")


@click.command(name="trigger-job")
@settings_options(CLIENT)
@_job_option
@click.option("-w", "--watch", "watch_", is_flag=True, help="Follow the build's log until it ends.")
def trigger_job(job: tuple[str, str], team: str, watch_: bool, **kwargs: Any) -> None:
    """Start a new build of a job (it waits while the job or its pipeline is paused)."""
    _started(kwargs, team, job, watch_, lambda c: c.trigger_job(team, *job))


@click.command(name="rerun-build")
@settings_options(CLIENT)
@_job_option
@click.option("-b", "--build", "build", required=True, metavar="NAME", help="The build to run again (e.g. 3).")
@click.option("-w", "--watch", "watch_", is_flag=True, help="Follow the new build's log until it ends.")
def rerun_build(job: tuple[str, str], team: str, build: str, watch_: bool, **kwargs: Any) -> None:
    """Run a build's plan again as a new build, named N.1, N.2, …"""
    _started(kwargs, team, job, watch_, lambda c: c.rerun_build(team, *job, build))


def _started(kwargs: dict[str, Any], team: str, job: tuple[str, str], watch_: bool,
             call: Callable[[WebClient], JobBuild]) -> None:
    settings, _ = _pop_settings(kwargs)
    try:
        with client_for(settings) as c:
            b = call(c)
            click.echo(f"started {b.pipeline}/{b.job} #{b.name}")
            if watch_:
                sys.exit(follow(c, team, job, b.name))
    except WebError as e:
        _fail(e)


@click.command(name="watch")
@settings_options(CLIENT)
@_job_option
@click.option("-b", "--build", "build", default=None, metavar="NAME", help="The build (default: the latest).")
def watch(job: tuple[str, str], team: str, build: str | None, **kwargs: Any) -> None:
    """Follow a job build: every step's log prefixed with [step]; exits 0 succeeded, 1 failed, 3 errored,
    130 aborted."""
    settings, _ = _pop_settings(kwargs)
    try:
        with client_for(settings) as c:
            if build is None:
                latest = c.job(team, *job).latest
                if latest is None:
                    _no_builds(job)
                build = latest.name
            sys.exit(follow(c, team, job, build))
    except WebError as e:
        _fail(e)


def _no_builds(job: tuple[str, str]) -> NoReturn:
    err.print(f"[red]error:[/red] {job[0]}/{job[1]} has no builds yet (`airside trigger-job -j {job[0]}/{job[1]}`)")
    sys.exit(1)


class StepPrinter:
    """Prints a job build's events: log lines prefixed with their step (`[unit] ...`), whole lines only."""

    def __init__(self) -> None:
        self.partial: dict[tuple[int, str], str] = {}

    def event(self, e: dict) -> None:
        step = e.get("step") or "?"
        if e["kind"] == "step":
            line = escape(f"[{step}] started (build {e['build_id']})")
            err.print(f"[dim]{line}[/dim]", highlight=False)
        elif e["kind"] == "log":
            key = (e["build_id"], e.get("stream") or "stdout")
            text = self.partial.pop(key, "") + e["data"]
            *lines, rest = text.split("\n")
            for line in lines:
                self._write(key[1], f"[{step}] {line}\n")
            if rest:
                self.partial[key] = rest
        elif e["kind"] == "status":
            line = escape(f"[{step}] {e['data']}")
            err.print(f"[dim]{line}[/dim]", highlight=False)

    def flush(self, steps: dict[int, str]) -> None:
        for (build_id, stream), rest in sorted(self.partial.items()):
            self._write(stream, f"[{steps.get(build_id, '?')}] {rest}\n")
        self.partial.clear()

    @staticmethod
    def _write(stream: str, text: str) -> None:
        out = sys.stdout if stream == "stdout" else sys.stderr
        out.write(text)
        out.flush()


def follow(c: WebClient, team: str, job: tuple[str, str], build: str) -> int:
    """Follows a job build to its end; the exit code of its outcome. Ctrl-C aborts the build (twice: leaves)."""
    label = f"{job[0]}/{job[1]} #{build}"
    interrupted = {"n": 0}

    def on_int(_sig: int, _frame: object) -> None:
        interrupted["n"] += 1
        if interrupted["n"] > 1:
            raise KeyboardInterrupt
        err.print(f"[yellow]aborting {label}…[/yellow]")
        try:
            c.abort_job_build(team, *job, build)
        except WebError as e:
            err.print(f"[red]abort failed:[/red] {e.message}")

    previous = signal.signal(signal.SIGINT, on_int)
    printer, steps, end = StepPrinter(), {}, {}
    try:
        for e in c.job_build_events(team, *job, build):
            if e["kind"] == "end":
                end = e
                break
            if e["kind"] == "step":
                steps[e["build_id"]] = e["step"]
            printer.event(e)
    finally:
        signal.signal(signal.SIGINT, previous)
        printer.flush(steps)
    status = JobBuildStatus(end.get("status", "errored"))
    colour = {JobBuildStatus.succeeded: "green", JobBuildStatus.aborted: "yellow"}.get(status, "red")
    reason = f": {end['reason']}" if end.get("reason") else ""
    err.print(f"[{colour}]{status}[/{colour}]{reason} ({label})", highlight=False)
    return EXIT_CODES.get(status, EXIT_ERRORED)
