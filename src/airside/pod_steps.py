"""The two airside steps of a Kubernetes task pod (see `airside.runtime.kubernetes`):

    airside fetch-inputs   --artifact-url URL --volume HANDLE=PATH ...   (init container, before the task)
    airside upload-outputs --artifact-url URL --volume HANDLE=PATH ... [--property K=V] [--ttl S]
                                                                         (main container, after the task)

The artifact store's token comes from the environment (`AIRSIDE_BAGGAGECLAIM_TOKEN`, from the Job's
Secret). `fetch-inputs` streams each volume into PATH (an emptyDir); `upload-outputs` creates each volume
HANDLE in the artifact store and streams PATH into it. Failures print one line naming the volume and
exit 1; the kubelet keeps the last log lines as the container's termination message, which the
runtime's watchdog reports.

This module composes the runtime's pod layout with the volume client, so it sits at the top layer
(beside `airside.execute`). The commands are built by `fetch_inputs_command(client_factory)` /
`upload_outputs_command(...)`; any object with `get_dir(handle, dest)`, `create(handle, properties=,
ttl=)`, `put_dir(handle, src)` and `close()` will do (tests pass fakes).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import click

from airside.baggageclaim.client import VolumeClient

TOKEN_ENV = "AIRSIDE_BAGGAGECLAIM_TOKEN"


class VolumeStore(Protocol):
    def get_dir(self, handle: str, dest: Path) -> None: ...
    def create(self, handle: str | None = None, *, properties: dict[str, str] | None = None,
               ttl: float = 0.0) -> Any: ...
    def put_dir(self, handle: str, src: Path) -> int: ...
    def close(self) -> None: ...


ClientFactory = Callable[[str, str], VolumeStore]  # (base_url, token) -> client


def _pairs(values: tuple[str, ...], what: str) -> list[tuple[str, str]]:
    out = []
    for v in values:
        key, sep, rest = v.partition("=")
        if not sep or not key or not rest:
            raise click.BadParameter(f"{v!r}: expected {what}", param_hint=f"--{'volume' if 'PATH' in what else 'property'}")
        out.append((key, rest))
    return out


def _token() -> str:
    token = os.environ.get(TOKEN_ENV, "")
    if not token:
        raise click.UsageError(f"no artifact-store token: {TOKEN_ENV} is not set (the Job's Secret provides it)")
    return token


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


_url = click.option("--artifact-url", required=True, help="URL of the artifact store (airside baggageclaim).")
_volumes = click.option("--volume", "volumes", multiple=True, required=True, metavar="HANDLE=PATH",
                        help="An artifact-store volume and its directory in the pod (repeatable).")


def fetch_inputs_command(client_factory: ClientFactory) -> click.Command:
    @click.command("fetch-inputs")
    @_url
    @_volumes
    def fetch_inputs(artifact_url: str, volumes: tuple[str, ...]) -> None:
        """(Kubernetes task pods) Stream input volumes from the artifact store into directories."""
        pairs = _pairs(volumes, "HANDLE=PATH")
        client = client_factory(artifact_url, _token())
        try:
            for handle, path in pairs:
                t0 = time.monotonic()
                try:
                    client.get_dir(handle, Path(path))
                except Exception as e:  # noqa: BLE001 - one line a person can act on, then exit 1
                    _fail(f"fetching input volume {handle!r} into {path} from {artifact_url}: {e}")
                click.echo(f"fetched {handle} -> {path} ({time.monotonic() - t0:.2f}s)", err=True)
        finally:
            client.close()

    return fetch_inputs


def upload_outputs_command(client_factory: ClientFactory) -> click.Command:
    @click.command("upload-outputs")
    @_url
    @_volumes
    @click.option("--property", "props", multiple=True, metavar="K=V", help="A property of every output volume.")
    @click.option("--ttl", type=float, default=0.0, show_default=True, help="TTL of the output volumes (0: none).")
    def upload_outputs(artifact_url: str, volumes: tuple[str, ...], props: tuple[str, ...], ttl: float) -> None:
        """(Kubernetes task pods) Create output volumes in the artifact store from directories."""
        pairs = _pairs(volumes, "HANDLE=PATH")
        properties = dict(_pairs(props, "K=V"))
        client = client_factory(artifact_url, _token())
        try:
            for handle, path in pairs:
                t0 = time.monotonic()
                try:
                    client.create(handle, properties=properties, ttl=ttl)
                    client.put_dir(handle, Path(path))
                except Exception as e:  # noqa: BLE001
                    _fail(f"uploading {path} as output volume {handle!r} to {artifact_url}: {e}")
                click.echo(f"uploaded {path} -> {handle} ({time.monotonic() - t0:.2f}s)", err=True)
        finally:
            client.close()

    return upload_outputs


# what `airside.cli` registers (SUBSYSTEM_COMMANDS)
fetch_inputs = fetch_inputs_command(VolumeClient)
upload_outputs = upload_outputs_command(VolumeClient)
