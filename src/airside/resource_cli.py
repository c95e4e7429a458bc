"""The resource commands, in fly's words: resources, check-resource, resource-versions, pin-resource,
unpin-resource, enable-resource-version, disable-resource-version.

    airside check-resource -r P/R --from ref:abc -w   # checks from that version and waits for the result
    airside pin-resource -r P/R -v ref:abc             # every get of R fetches that version until unpinned

A resource is named by `-r PIPELINE/RESOURCE` in team `--team` (default main). A version is given by its
fields (`-v KEY:VALUE`, repeated for more fields): the newest version whose fields include all of them.
`check-resource -w` follows the check's log and exits 0 when it stored its versions, 1 when it failed
(the error printed).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from airside.cli import _fail, _pop_settings, client_for
from airside.config import CLIENT
from airside.core.client import WebClient, WebError
from airside.core.options import settings_options
from airside.core.schemas import ResourceVersion, Version, VersionUse
from airside.pipeline_cli import _ago, _json_option, _print_json, _run, _team_option, err

STORE_TIMEOUT = 30.0  # seconds check-resource -w waits, after the check's build ended, for web to store its result


def parse_resource(value: str) -> tuple[str, str]:
    """`PIPELINE/RESOURCE` → (pipeline, resource)."""
    pipeline, slash, resource = value.partition("/")
    if not slash or not pipeline or not resource:
        raise click.BadParameter(f"{value!r}: expected PIPELINE/RESOURCE")
    return pipeline, resource


def parse_version(values: tuple[str, ...]) -> Version:
    """`KEY:VALUE` pairs → a version (fields)."""
    version: Version = {}
    for v in values:
        key, colon, value = v.partition(":")
        if not colon or not key:
            raise click.BadParameter(f"{v!r}: expected KEY:VALUE (a field of the version)")
        version[key] = value
    return version


def format_version(version: Version | None) -> str:
    return "-" if version is None else ",".join(f"{k}:{v}" for k, v in sorted(version.items()))


def _resource_option(fn: Callable) -> Callable:
    return _team_option(click.option("-r", "--resource", "resource", required=True, metavar="PIPELINE/RESOURCE",
                                     callback=lambda _c, _p, v: parse_resource(v), help="The resource.")(fn))


def _version_option(fn: Callable) -> Callable:
    return click.option("-v", "--version", "version", multiple=True, required=True, metavar="KEY:VALUE",
                        callback=lambda _c, _p, v: parse_version(v),
                        help="A field of the version (repeat for more); the newest version that has them all.")(fn)


def _no_version(resource: tuple[str, str], version: Version) -> NoReturn:
    err.print(escape(f"error: no version of {resource[0]}/{resource[1]} has {format_version(version)} "
                     f"(`airside resource-versions -r {resource[0]}/{resource[1]}`)"), highlight=False)
    sys.exit(1)


def _find(c: WebClient, team: str, resource: tuple[str, str], version: Version) -> ResourceVersion:
    found = c.resource_versions(team, *resource, limit=1, match=version)
    if not found:
        _no_version(resource, version)
    return found[0]


# --- listings ----------------------------------------------------------------------------------------------
@click.command(name="resources")
@settings_options(CLIENT)
@_team_option
@click.option("-p", "--pipeline", "pipeline", required=True, metavar="PIPELINE", help="The pipeline.")
@_json_option
def list_resources(pipeline: str, team: str, as_json: bool, **kwargs: Any) -> None:
    """List a pipeline's resources with their check status and pinned version."""
    rs = _run(kwargs, lambda c: c.resources(team, pipeline))
    if as_json:
        _print_json(rs)
        return
    table = Table("name", "type", "pinned", "checked", "status")
    for r in rs:
        status = (f"checking (build {r.check_build_id})" if r.check_build_id is not None
                  else (r.check_error.splitlines() or ["errored"])[0] if r.check_error else "ok" if r.last_checked else "-")
        table.add_row(escape(r.name), escape(r.type), escape(format_version(r.pinned_version)), _ago(r.last_checked),
                      escape(status[:100]))
    Console().print(table)


def _uses(uses: list[VersionUse]) -> str:
    return ", ".join(f"{u.job} #{u.build}" for u in uses) or "-"


@click.command(name="resource-versions")
@settings_options(CLIENT)
@_resource_option
@click.option("-n", "--count", "count", default=50, show_default=True, help="How many versions (newest first).")
@_json_option
def resource_versions(resource: tuple[str, str], team: str, count: int, as_json: bool, **kwargs: Any) -> None:
    """List a resource's versions, newest first, with the job builds that fetched or produced each."""
    vs = _run(kwargs, lambda c: c.resource_versions(team, *resource, limit=count))
    if as_json:
        _print_json(vs)
        return
    table = Table("id", "version", "enabled", "fetched by", "produced by")
    for v in vs:
        table.add_row(str(v.id), escape(format_version(v.version)) + (" (pinned)" if v.pinned else ""),
                      "yes" if v.enabled else "no", escape(_uses(v.input_to)), escape(_uses(v.output_of)))
    Console().print(table)


# --- checks ------------------------------------------------------------------------------------------------
@click.command(name="check-resource")
@settings_options(CLIENT)
@_resource_option
@click.option("-f", "--from", "from_", multiple=True, metavar="KEY:VALUE",
              callback=lambda _c, _p, v: parse_version(v) if v else None,
              help="Check from this version (a field; repeat for more). Default: from the latest version.")
@click.option("-w", "--watch", "watch_", is_flag=True, help="Follow the check until it ends and print its result.")
def check_resource(resource: tuple[str, str], team: str, from_: Version | None, watch_: bool, **kwargs: Any) -> None:
    """Check a resource for new versions now (409 while a check of it runs)."""
    settings, _ = _pop_settings(kwargs)
    try:
        with client_for(settings) as c:
            started = c.check_resource(team, *resource, from_version=from_)
            click.echo(f"checking {resource[0]}/{resource[1]} from {format_version(started.version)} "
                       f"in build {started.build_id}")
            if watch_:
                sys.exit(follow_check(c, team, resource, started.build_id))
    except WebError as e:
        _fail(e)


def follow_check(c: WebClient, team: str, resource: tuple[str, str], build_id: int) -> int:
    """Prints the check's log (its stderr) until its build ends, waits for web to store what it found, and
    prints that: 0 when it succeeded, 1 when it failed."""
    try:
        for e in c.events(build_id):
            if e.get("kind") == "log" and e.get("stream") != "stdout":  # stdout is the answer, stored below
                sys.stderr.write(e["data"])
                sys.stderr.flush()
    except WebError as e:
        if e.status != 404:  # 404: a later check already replaced this one; its result is stored
            raise
    deadline = time.monotonic() + STORE_TIMEOUT
    r = c.resource(team, *resource)
    while r.check_build_id == build_id and time.monotonic() < deadline:
        time.sleep(0.2)  # the scheduler stores a check's result in its next round (at once when a build ends)
        r = c.resource(team, *resource)
    label = f"{resource[0]}/{resource[1]}"
    if r.check_build_id == build_id:
        err.print(f"[red]error:[/red] the check ended but web did not store its result within {STORE_TIMEOUT:.0f}s "
                  f"({escape(label)})", highlight=False)
        return 1
    if r.check_error:
        err.print(f"[red]errored[/red]: {escape(r.check_error)} ({escape(label)})", highlight=False)
        return 1
    latest = c.resource_versions(team, *resource, limit=1)
    err.print(f"[green]succeeded[/green] ({escape(label)}): latest version "
              f"{escape(format_version(latest[0].version) if latest else '-')}", highlight=False)
    return 0


# --- pins and disabled versions ------------------------------------------------------------------------------
@click.command(name="pin-resource")
@settings_options(CLIENT)
@_resource_option
@_version_option
def pin_resource(resource: tuple[str, str], team: str, version: Version, **kwargs: Any) -> None:
    """Pin a resource to a version: every get of it fetches that version until it is unpinned."""
    v = _run(kwargs, lambda c: c.pin_resource_version(team, *resource, _find(c, team, resource, version).id)
             .pinned_version)
    click.echo(f"pinned '{resource[1]}' with version {format_version(v)}")


@click.command(name="unpin-resource")
@settings_options(CLIENT)
@_resource_option
def unpin_resource(resource: tuple[str, str], team: str, **kwargs: Any) -> None:
    """Unpin a resource: its gets take the newest acceptable version again."""
    _run(kwargs, lambda c: c.unpin_resource(team, *resource))
    click.echo(f"unpinned '{resource[1]}'")


def _version_command(name: str, doc: str, call: str, done: str) -> click.Command:
    @click.command(name=name, help=doc)
    @settings_options(CLIENT)
    @_resource_option
    @_version_option
    def _cmd(resource: tuple[str, str], team: str, version: Version, **kwargs: Any) -> None:
        def go(c: WebClient) -> Version:
            v = _find(c, team, resource, version)
            getattr(c, call)(team, *resource, v.id)
            return v.version

        click.echo(f"{done} version {format_version(_run(kwargs, go))} of '{resource[1]}'")

    return _cmd


disable_resource_version = _version_command(
    "disable-resource-version", "Disable a version of a resource: no get fetches it and it triggers nothing.",
    "disable_resource_version", "disabled")
enable_resource_version = _version_command(
    "enable-resource-version", "Enable a disabled version of a resource again.", "enable_resource_version", "enabled")
