"""The Runtime interface: how a worker (or web, for Kubernetes) runs one task container.

Phases, in order, keyed by a handle the caller chooses (unique per container):

    prepare(spec)  → lay the container down (bundle, cgroup, …); nothing runs yet
    start(handle)  → the process starts
    logs(handle)   → iterate over output chunks (LogChunk) from the start; ends when the process exits.
                     Can be called again after a worker restart: it replays what was captured, then follows.
    wait(handle)   → block until the process exits; returns ExitStatus
    destroy(handle)→ kill if running, remove everything; idempotent (a missing handle is success)

Other calls:
    list()         → handles this runtime holds (for the reaper and for re-attaching after a restart)
    status(handle) → "prepared" | "running" | "exited" | "missing"
    signal(handle, sig) → deliver a signal to the task process (abort, drain timeout)

Concurrency: different handles may be used from different threads at the same time; calls on one
handle are made by one thread at a time, except `logs` which may run beside `wait` and `signal`.
Errors: `RuntimeError_` with a message a person can act on. A task's own non-zero exit is not an error:
it is an ExitStatus.

Backends live side by side in this package (`oci.py`, `process.py`, `kubernetes/`) and never import
each other; `get_runtime(name, state_dir)` builds one.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


class RuntimeError_(Exception):  # noqa: N801 - avoid shadowing the builtin RuntimeError
    """The runtime could not do what was asked (not the task failing)."""


@dataclass(frozen=True)
class Mount:
    source: Path  # host path (a volume's directory)
    destination: str  # absolute path inside the container
    read_only: bool = False


@dataclass(frozen=True)
class Limits:
    cpu_shares: int | None = None  # Concourse container_limits.cpu (relative weight)
    memory_bytes: int | None = None  # Concourse container_limits.memory


NETWORKS = ("bridge", "loopback", "host")


@dataclass(frozen=True)
class ContainerSpec:
    handle: str
    rootfs: Path | None  # the image's root filesystem (a COW volume); None for the process runtime
    path: str  # run.path
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # params, plus anything the worker adds
    dir: str = "/"  # working directory inside the container (absolute)
    user: str | None = None  # run.user: a name from the image's /etc/passwd, or uid[:gid]
    mounts: list[Mount] = field(default_factory=list)
    limits: Limits = field(default_factory=Limits)
    privileged: bool = False
    image: str = ""  # a name for the image, used in error messages (e.g. an unknown run.user)
    stdin: str | None = None  # what the process reads on stdin (a resource script's JSON request); else /dev/null
    network: str = "loopback"  # one of NETWORKS: "bridge": own namespace on the worker's CNI bridge (oci);
    # "loopback": own namespace with only lo; "host": the host's network


@dataclass(frozen=True)
class LogChunk:
    stream: str  # "stdout" | "stderr"
    data: bytes


@dataclass(frozen=True)
class ExitStatus:
    code: int  # the process's exit code; 128+N when killed by signal N
    reason: str = ""  # e.g. "OOMKilled", "killed by SIGKILL"


class Runtime(abc.ABC):
    name: str = "abstract"
    isolates: bool = True  # False for the process runtime: it says so loudly

    @abc.abstractmethod
    def prepare(self, spec: ContainerSpec) -> None: ...

    @abc.abstractmethod
    def start(self, handle: str) -> None: ...

    @abc.abstractmethod
    def logs(self, handle: str, follow: bool = True) -> Iterator[LogChunk]: ...

    @abc.abstractmethod
    def wait(self, handle: str, timeout: float | None = None) -> ExitStatus | None:
        """The exit status, or None if `timeout` passed first."""

    @abc.abstractmethod
    def signal(self, handle: str, sig: int) -> None: ...

    @abc.abstractmethod
    def destroy(self, handle: str) -> None: ...

    @abc.abstractmethod
    def status(self, handle: str) -> str: ...

    @abc.abstractmethod
    def list(self) -> list[str]: ...

    def close(self) -> None:
        """Stop what this runtime instance runs for its containers (not the containers: they outlive it)."""
        return None
