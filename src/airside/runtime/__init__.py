"""Runtime interface and backends: oci (runc), process, kubernetes (issues 6, 7).

`get_runtime(name, state_dir)` builds a backend; backends are imported only when asked for, so the
kubernetes client is never imported by a worker that runs runc.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .base import NETWORKS, ContainerSpec, ExitStatus, Limits, LogChunk, Mount, Runtime, RuntimeError_

if TYPE_CHECKING:  # the backends (and their network) are imported only when asked for
    from .net import NetworkConfig

__all__ = [
    "ContainerSpec", "ExitStatus", "Limits", "LogChunk", "Mount", "NETWORKS", "Runtime", "RuntimeError_",
    "RUNTIMES", "get_runtime",
]  # fmt: skip

RUNTIMES = ("oci", "process")


def get_runtime(name: str, state_dir: Path, *, runc: str = "runc", network: NetworkConfig | None = None) -> Runtime:
    """A runtime by name: "oci" (runc; option `runc`; `network`: its bridge network, for containers whose
    spec asks for "bridge") or "process" (no isolation, no network of its own)."""
    if name == "oci":
        from .oci import OCIRuntime

        return OCIRuntime(Path(state_dir), runc=runc, network=network)
    if name == "process":
        from .process import ProcessRuntime

        return ProcessRuntime(Path(state_dir))
    raise RuntimeError_(f"unknown runtime {name!r}: choose one of {', '.join(RUNTIMES)}")
