"""`airside render`: write the Helm chart, the compose project or the BOSH jobs from the deployment model."""

from __future__ import annotations

from pathlib import Path

import click

from airside.packaging.render import TARGETS, OverrideError, load_overrides
from airside.packaging.render import render as render_target


@click.command("render")
@click.option("--target", "-t", type=click.Choice(sorted(TARGETS)), required=True, help="What to render.")
@click.option("-f", "--values", "values_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="YAML overrides of the values (the chart's values.yaml keys, for every target).")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Output directory [default: chart/, docker/ or bosh/].")
def render(target: str, values_file: Path | None, out_dir: Path | None) -> None:
    """Render a deployment (helm | compose | bosh) from the one deployment model."""
    try:
        overrides = load_overrides(values_file) if values_file else None
        files = render_target(target, overrides, out_dir)
    except OverrideError as e:
        where = f"{values_file}: " if values_file else ""
        raise click.UsageError(f"{where}{e}") from None
    out = out_dir or Path(TARGETS[target])
    click.echo(f"rendered {len(files)} files into {out}/")
