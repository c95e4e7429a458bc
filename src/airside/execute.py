"""`airside execute`: run a task config once with local inputs, follow its logs, fetch its outputs.

    airside execute -c task.yml -i src=. -i deps=../deps -o out=./out [--tag T]

Exit status: the task's own exit code when it ran (0 succeeded, N failed); 3 when the build errored
(the infrastructure failed: the reason is printed); 130 when aborted (Ctrl-C aborts the build).
"""

from __future__ import annotations

import hashlib
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import zstandard
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn, TransferSpeedColumn

from airside.baggageclaim.streaming import extract, iter_tar
from airside.core import routes
from airside.core.client import WebClient, WebError
from airside.core.schemas import BuildCreate, BuildStatus
from airside.runtime.attempt import KEEPS_OUTPUTS
from airside.task import TaskConfigError, load_task_config

EXIT_ERRORED, EXIT_ABORTED = 3, 130
err = Console(stderr=True, soft_wrap=True)


def parse_pairs(values: tuple[str, ...], what: str) -> dict[str, Path]:
    out = {}
    for v in values:
        name, sep, path = v.partition("=")
        if not sep or not name or not path:
            raise click.UsageError(f"{what} {v!r}: expected name=path")
        out[name] = Path(path)
    return out


def _zstd_chunks(chunks: Iterator[bytes], progress: Progress, task: TaskID) -> Iterator[bytes]:
    comp = zstandard.ZstdCompressor(level=3).compressobj()
    for c in chunks:
        progress.update(task, advance=len(c))
        if out := comp.compress(c):
            yield out
    yield comp.flush()


def _dir_size(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file() and not f.is_symlink())


def run(client: WebClient, config_path: Path, inputs: dict[str, Path], outputs: dict[str, Path], tags: list[str],
        quiet_progress: bool = False) -> int:
    try:
        text = config_path.read_text()
    except OSError as e:
        raise click.UsageError(f"cannot read task config {config_path}: {e.strerror}") from None
    try:
        config = load_task_config(text, str(config_path))
    except TaskConfigError as e:
        err.print(f"[red]invalid task config[/red]\n{e}")
        return 2
    names = [i.name for i in config.inputs]
    if not inputs and len(names) == 1:
        inputs = {names[0]: Path(".")}  # as fly execute: a lone input defaults to the current directory
    unknown = sorted(set(inputs) - set(names))
    if unknown:
        raise click.UsageError(f"the task has no input named {', '.join(unknown)} (it has: {', '.join(names) or 'none'})")
    missing = [i.name for i in config.inputs if i.name not in inputs and not i.optional]
    if missing:
        raise click.UsageError(f"missing required inputs: {', '.join(missing)} (pass -i NAME=DIR)")
    bad_out = sorted(set(outputs) - {o.name for o in config.outputs})
    if bad_out:
        raise click.UsageError(f"the task has no output named {', '.join(bad_out)}")
    for name, d in inputs.items():
        if not d.is_dir():
            raise click.UsageError(f"input {name}: {d} is not a directory")

    # caches belong to "this task": the same task file (by absolute path) shares its caches between runs
    cache_key = "execute-" + hashlib.sha256(str(config_path.resolve()).encode()).hexdigest()[:32]
    build = client.create_build(BuildCreate(config=text, config_filename=config_path.name, inputs=sorted(inputs),
                                            tags=tags, cache_key=cache_key))
    err.print(f"[dim]build {build.id} created[/dim]")
    with Progress(TextColumn("uploading {task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  console=err, disable=quiet_progress, transient=True) as progress:
        for name, d in sorted(inputs.items()):
            task = progress.add_task(name, total=_dir_size(d))
            client.upload(routes.PUT_INPUT, _zstd_chunks(iter_tar(d.resolve()), progress, task), encoding="zstd",
                          build_id=str(build.id), name=name)
    if build.status == BuildStatus.created:
        client.start_build(build.id)
    return follow(client, build.id, outputs)


def follow(client: WebClient, build_id: int, outputs: dict[str, Path]) -> int:
    aborted = {"n": 0}

    def on_int(_sig: int, _frame: object) -> None:
        aborted["n"] += 1
        if aborted["n"] > 1:
            raise KeyboardInterrupt
        err.print(f"[yellow]aborting build {build_id}…[/yellow]")
        try:
            client.abort_build(build_id)
        except WebError as e:
            err.print(f"[red]abort failed:[/red] {e.message}")

    previous = signal.signal(signal.SIGINT, on_int)
    end: dict = {}
    try:
        for e in client.events(build_id):
            if e["kind"] == "log":
                stream = sys.stdout if e["stream"] == "stdout" else sys.stderr
                stream.write(e["data"])
                stream.flush()
            elif e["kind"] == "status":
                err.print(f"[dim]{e['data']}[/dim]")
            elif e["kind"] == "end":
                end = e
                break
    finally:
        signal.signal(signal.SIGINT, previous)
    status, exit_code, reason = end.get("status"), end.get("exit_code"), end.get("reason", "")
    if status in KEEPS_OUTPUTS:
        for name, dest in outputs.items():
            fetch_output(client, build_id, name, dest)
    elif outputs and status == BuildStatus.failed:
        err.print(f"[dim]outputs not fetched: a failed task's outputs are not kept ({', '.join(outputs)})[/dim]")
    if status == BuildStatus.succeeded:
        err.print(f"[green]succeeded[/green] (build {build_id})")
        return 0
    if status == BuildStatus.failed:
        err.print(f"[red]failed[/red] with exit code {exit_code} (build {build_id})")
        return exit_code or 1
    if status == BuildStatus.aborted:
        err.print(f"[yellow]aborted[/yellow] (build {build_id})")
        return EXIT_ABORTED
    err.print(f"[red]errored[/red]: {reason} (build {build_id})")
    return EXIT_ERRORED


def fetch_output(client: WebClient, build_id: int, name: str, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    with client.download(routes.GET_OUTPUT, build_id=str(build_id), name=name) as (chunks, encoding):
        entries, _ = extract(chunks, dest, "", privileged=False, encoding="zstd" if encoding == "zstd" else "raw",
                             limit=1 << 40)
    err.print(f"[dim]output {name}: {entries} entries → {dest}[/dim]")


