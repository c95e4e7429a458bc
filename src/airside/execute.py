"""`airside execute`: run a task config once with local inputs, follow its logs, fetch its outputs.

    airside execute -c task.yml -i src=. -i deps=../deps -o out=./out [--tag T] [-m TASK_INPUT=NAME]
                    [--image REPO[:TAG]] [--include-ignored] [-p/--privileged] [-- ARGS...]

As `fly execute`: a git work tree is uploaded without what .gitignore ignores (unless --include-ignored);
params whose value is null are taken from this environment when set there; ARGS after `--` are appended
to run.args; --image replaces the task's image with a registry image; -m feeds task input TASK_INPUT from
the directory given as `-i NAME=DIR`; -p runs it privileged (where the operator allows it).

Exit status: the task's own exit code when it ran (0 succeeded, N failed); 3 when the build errored
(the infrastructure failed: the reason is printed); 130 when aborted (Ctrl-C aborts the build).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import click
import zstandard
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn, TransferSpeedColumn

from airside.baggageclaim.streaming import extract, iter_tar, tar_blocks
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


def parse_image(ref: str) -> dict:
    """``--image REPO[:TAG]`` (or ``REPO@DIGEST``) as an image_resource."""
    repo, digest = ref.partition("@")[0], ref.partition("@")[2]
    name, tag = repo, ""
    if ":" in repo.rsplit("/", 1)[-1]:
        name, _, tag = repo.rpartition(":")
    if not name:
        raise click.UsageError(f"--image {ref!r}: expected REPOSITORY[:TAG] or REPOSITORY@DIGEST")
    source: dict = {"repository": name, **({"tag": tag} if tag else {})}
    return {"type": "registry-image", "source": source, **({"version": {"digest": digest}} if digest else {})}


def _git_files(d: Path) -> list[str] | None:
    """The files of `d` that git does not ignore (tracked and untracked, as fly uploads), or None when `d`
    is not in a git work tree."""
    try:
        inside = subprocess.run(["git", "-C", str(d), "rev-parse", "--is-inside-work-tree"],
                                capture_output=True, text=True)
    except FileNotFoundError:
        return None
    if inside.returncode != 0 or inside.stdout.strip() != "true":
        return None
    listed = subprocess.run(["git", "-C", str(d), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, check=True)
    return [f for f in listed.stdout.decode().split("\0") if f and os.path.lexists(d / f)]


def _iter_tar_files(d: Path, files: list[str]) -> Iterator[bytes]:
    """A tar of the listed files of `d` (their parent directories are made on extraction)."""
    with tempfile.NamedTemporaryFile("wb") as listing:
        listing.write(b"".join(f.encode() + b"\0" for f in files))
        listing.flush()
        yield from tar_blocks(["tar", "-c", "-f", "-", "-C", str(d), "--null", "--no-recursion", "-T", listing.name],
                              str(d), 1 << 20)


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
        quiet_progress: bool = False, *, input_mapping: dict[str, str] | None = None, image: str | None = None,
        args: tuple[str, ...] = (), include_ignored: bool = False, privileged: bool = False,
        environ: dict[str, str] | None = None, inputs_from: str | None = None) -> int:
    if inputs_from is not None and inputs_from.count("/") != 1:
        raise click.UsageError(f"-j {inputs_from}: expected PIPELINE/JOB")
    try:
        text = config_path.read_text()
    except OSError as e:
        raise click.UsageError(f"cannot read task config {config_path}: {e.strerror}") from None
    try:
        config = load_task_config(text, str(config_path))
    except TaskConfigError as e:
        err.print(f"[red]invalid task config[/red]\n{e}")
        return 2
    for w in config.warnings:
        err.print(f"[yellow]WARNING[/yellow] {w}", highlight=False)
    for task_input, given in (input_mapping or {}).items():
        if given not in inputs:
            raise click.UsageError(f"-m {task_input}={given}: no -i {given}=DIR was given")
        inputs = {(task_input if k == given else k): v for k, v in inputs.items()}
    names = [i.name for i in config.inputs]
    if not inputs and len(names) == 1 and not inputs_from:
        inputs = {names[0]: Path(".")}  # as fly execute: a lone input defaults to the current directory
    unknown = sorted(set(inputs) - set(names))
    if unknown:
        raise click.UsageError(f"the task has no input named {', '.join(unknown)} (it has: {', '.join(names) or 'none'})")
    missing = [i.name for i in config.inputs if i.name not in inputs and not i.optional]
    if missing and not inputs_from:  # with -j, web takes them from the job's latest build (or says which it lacks)
        raise click.UsageError(f"missing required inputs: {', '.join(missing)} (pass -i NAME=DIR)")
    bad_out = sorted(set(outputs) - {o.name for o in config.outputs})
    if bad_out:
        raise click.UsageError(f"the task has no output named {', '.join(bad_out)}")
    for name, d in inputs.items():
        if not d.is_dir():
            raise click.UsageError(f"input {name}: {d} is not a directory")

    # what `fly execute` changes in the config: null params from the environment, --image, trailing args
    env = os.environ if environ is None else environ
    data = config.model_dump(mode="json")
    from_env = {k: env[k] for k, v in config.params.items() if v is None and k in env}
    data["params"] = {**data["params"], **from_env}
    if image:
        data["image_resource"] = parse_image(image)
    if args:
        data["run"]["args"] = [*data["run"]["args"], *args]
    sent = text if not (from_env or image or args) else json.dumps(data)

    # caches belong to "this task": the same task file (by absolute path) shares its caches between runs
    cache_key = "execute-" + hashlib.sha256(str(config_path.resolve()).encode()).hexdigest()[:32]
    build = client.create_build(BuildCreate(config=sent, config_filename=config_path.name, inputs=sorted(inputs),
                                            tags=tags, cache_key=cache_key, privileged=privileged,
                                            inputs_from=inputs_from))
    err.print(f"[dim]build {build.id} created[/dim]")
    with Progress(TextColumn("uploading {task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  console=err, disable=quiet_progress, transient=True) as progress:
        for name, d in sorted(inputs.items()):
            files = None if include_ignored else _git_files(d.resolve())
            task = progress.add_task(name, total=_dir_size(d))
            tar = iter_tar(d.resolve()) if files is None else _iter_tar_files(d.resolve(), files)
            client.upload(routes.PUT_INPUT, _zstd_chunks(tar, progress, task), encoding="zstd",
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


