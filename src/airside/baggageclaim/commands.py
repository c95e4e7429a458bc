"""`airside baggageclaim` (serve the volume server alone) and `airside volumes` (list volumes)."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from airside.config import BAGGAGECLAIM, CLIENT, Settings
from airside.core import log
from airside.core.options import load_settings, settings_options


def _settings(kwargs: dict[str, Any]) -> tuple[Settings, dict[str, Any]]:
    rest = {k: v for k, v in kwargs.items() if k not in Settings.model_fields}
    settings = load_settings(kwargs)
    log.configure(settings.log_level, settings.log_format, component="baggageclaim")
    return settings, rest


@click.command("baggageclaim")
@settings_options(BAGGAGECLAIM)
def baggageclaim(**kwargs: Any) -> None:
    """Run the volume server alone (the artifact store on Kubernetes)."""
    from airside.baggageclaim.errors import DriverUnavailable
    from airside.baggageclaim.server import serve

    settings, _ = _settings(kwargs)
    try:
        serve(settings)
    except DriverUnavailable as e:
        raise click.ClickException(str(e)) from None


@click.command("volumes")
@settings_options(CLIENT)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("-p", "--property", "props", multiple=True, metavar="NAME=VALUE",
              help="Only volumes with this property (repeatable).")
def volumes(as_json: bool, props: tuple[str, ...], **kwargs: Any) -> None:
    """List the volumes of a volume server (baggageclaim_url)."""
    from rich.console import Console
    from rich.table import Table

    from airside.baggageclaim.client import VolumeClientError, client_for

    settings, _ = _settings(kwargs)
    filters = {}
    for p in props:
        name, sep, value = p.partition("=")
        if not sep:
            raise click.UsageError(f"--property {p!r}: expected NAME=VALUE")
        filters[name] = value
    try:
        with client_for(settings) as c:
            vols = c.list(**filters)
    except VolumeClientError as e:
        Console(stderr=True).print(f"[red]error:[/red] {e.message}")
        sys.exit(2 if e.status == 0 else 1)
    if as_json:
        click.echo(json.dumps([v.model_dump(mode="json") for v in vols], indent=2))
        return
    table = Table("handle", "parent", "strategy", "state", "privileged", "ttl", "properties")
    for v in vols:
        table.add_row(v.handle, v.parent or "-", v.strategy, v.state, "yes" if v.privileged else "no",
                      f"{v.ttl:g}s" if v.ttl else "never", ",".join(f"{k}={x}" for k, x in v.properties.items()))
    Console().print(table)
