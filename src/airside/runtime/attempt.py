"""One build attempt's lifecycle: its names, its phases in order, and its outcome rules.

Everything that runs a container for a build goes through `run_attempt`: the worker's `TaskRunner`
(runc or a plain process on a worker) and web's `KubeDispatcher` (a Kubernetes Job). Each supplies an
`AttemptBackend` — how to get the image, the inputs, start, follow the log, wait, collect outputs and
report — and this module decides everything the two must agree on:

Names (`AttemptNames`), for build B attempt A:
  container / Job handle   ``bB-aA``            (a DNS label: valid as a Job name too)
  input volume             ``bB-aA-in-<name>``
  output volume            ``bB-aA-output-<name>``
  rootfs volume            ``bB-aA-rootfs``
  cache volume             ``cache-<24 hex>``   (keyed by the build's cache key and the cache path; kept
                                                 across builds, so not named after the attempt)
  in an artifact store (Kubernetes Jobs), where every attempt saves a cache anew:
    saved cache            ``cache-<24 hex>-bB-aA``  (the cache volume's name and the attempt that saved it)
    fetched cache          ``bB-aA-cache-<i>``   (the attempt's copy-on-write child of the newest saved one)
Every build-scoped volume carries the properties ``role``/``build``/``attempt`` (`properties`), which is
what web's GC decides by.

Phases, in this order, each reported once: ``image_ready`` (the rootfs exists; on Kubernetes the kubelet
pulls the image when the pod starts, so the backend's `prepare_image` does nothing and the pull shows in
the time to ``started``), ``inputs_ready``, ``started``.

Outcome (`outcome`), from the container's exit and what happened meanwhile, first match wins:
  1. interrupted (the worker drained past its timeout, web stopped following): ``errored`` with the
     interruption's reason;
  2. abort requested: ``aborted``;
  3. exit code 0: ``succeeded`` — the outputs are collected and kept;
  4. any other exit code: ``failed`` with the exit code and the runtime's reason. **A failed task's
     outputs are not kept**, on any runtime. (On Kubernetes the task runs as an init container before
     the `upload-outputs` step, and a failed init container ends the pod, so the outputs cannot be
     read back; the worker follows the same rule so a build's result never depends on where it ran.)
  No exit status at all (the container vanished) is an infrastructure error.
Infrastructure errors (`AttemptError`, or an error type the backend declares in `infra_errors`) end the
attempt ``errored`` with the reason — or requeue it when the error says so (`requeue=True`: the pod was
evicted, the node went away), exactly like a worker that stalls. `Lost` (web says the attempt is no longer
this runner's: requeued, aborted elsewhere) stops quietly, reporting nothing. Any other exception is a
bug: the attempt ends ``errored`` naming it, never hangs. Whatever happened, `cleanup` runs last.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import structlog

from airside.core import log
from airside.core.schemas import BuildStatus, FinishReport, Phase

from .base import ExitStatus

LOG = log.get("airside.attempt")

PHASES = (Phase.image_ready, Phase.inputs_ready, Phase.started)
#: the statuses whose outputs are kept (see the outcome rule): `airside execute` downloads only these
KEEPS_OUTPUTS = frozenset({BuildStatus.succeeded})


@dataclass(frozen=True)
class AttemptNames:
    """The names of one build attempt's container and volumes (see the module docstring)."""

    build_id: int
    attempt: int

    @property
    def key(self) -> str:
        """``B.A``: how web and the worker list the attempts they know (assignments, `known`)."""
        return f"{self.build_id}.{self.attempt}"

    @property
    def handle(self) -> str:
        return f"b{self.build_id}-a{self.attempt}"

    def input_volume(self, name: str) -> str:
        return f"{self.handle}-in-{name}"

    def output_volume(self, name: str) -> str:
        return output_volume(self.handle, name)

    @property
    def rootfs_volume(self) -> str:
        return f"{self.handle}-rootfs"

    def cache_volume(self, cache_key: str | None, path: str) -> str:
        """A cache's volume: the same for every build with the same cache key (a job, an execute of the
        same task) and path; a build without a cache key gets caches of its own."""
        key = hashlib.sha256(f"{cache_key or self.build_id}:{path}".encode()).hexdigest()[:24]
        return f"cache-{key}"

    def cache_saved_volume(self, cache_key: str | None, path: str) -> str:
        """The volume this attempt saves a cache to in an artifact store (a Job's `upload-outputs`): the cache's
        volume name plus the attempt's handle, so concurrent attempts never write the same volume."""
        return f"{self.cache_volume(cache_key, path)}-{self.handle}"

    def cache_fetch_volume(self, index: int) -> str:
        """This attempt's own copy (a copy-on-write child) of the saved cache it fetches for its cache `index`."""
        return f"{self.handle}-cache-{index}"

    def properties(self, role: str) -> dict[str, str]:
        """The properties of a build-scoped volume (role input / output / rootfs): what GC decides by."""
        return {"role": role, "build": str(self.build_id), "attempt": str(self.attempt)}


def output_volume(handle: str, name: str) -> str:
    """The volume an output named `name` of the container `handle` is written to."""
    return f"{handle}-output-{name}"


class AttemptError(Exception):
    """The infrastructure failed this attempt: it ends errored with `reason`, or is requeued."""

    def __init__(self, reason: str, *, requeue: bool = False) -> None:
        super().__init__(reason)
        self.reason, self.requeue = reason, requeue


class Lost(Exception):
    """The attempt is no longer ours (web requeued or ended it): stop quietly, report nothing."""


@dataclass(frozen=True)
class Outcome:
    status: BuildStatus
    exit_code: int | None
    reason: str
    keep_outputs: bool

    def report(self, attempt: int, outputs: list[str]) -> FinishReport:
        return FinishReport(attempt=attempt, status=self.status, exit_code=self.exit_code, reason=self.reason,
                            outputs=list(outputs))


def outcome(exit: ExitStatus | None, *, aborted: bool, interrupted: str | None) -> Outcome:
    """The rule of the module docstring, as a pure function. Raises `AttemptError` for no exit status."""
    if exit is None:
        raise AttemptError("container vanished without an exit status")
    if interrupted:
        return Outcome(BuildStatus.errored, exit.code, interrupted, keep_outputs=False)
    if aborted:
        return Outcome(BuildStatus.aborted, exit.code, "aborted", keep_outputs=False)
    if exit.code == 0:
        return Outcome(BuildStatus.succeeded, 0, "", keep_outputs=BuildStatus.succeeded in KEEPS_OUTPUTS)
    return Outcome(BuildStatus.failed, exit.code, exit.reason, keep_outputs=BuildStatus.failed in KEEPS_OUTPUTS)


def error_reason(e: BaseException) -> str:
    """What an infrastructure error says to the user: its `message` (client errors) or its text."""
    return getattr(e, "reason", None) or getattr(e, "message", None) or str(e) or e.__class__.__name__


class AttemptBackend(Protocol):
    """Where and how one attempt runs. `run_attempt` calls, in order: `prepare_image`, `prepare_inputs`,
    `start_container` (each followed by its phase report; skipped when adopting a container that already runs),
    `follow` (returns when the container exited; kills it when an abort is requested), `wait`,
    `aborted` / `interrupted`, `collect_outputs` (only when the outcome keeps them), then `finish` — or
    `fail` on an infrastructure error — and always `cleanup` (idempotent, errors only logged).
    Nothing here is called concurrently, except that `interrupted` may be set from another thread."""

    names: AttemptNames
    #: who runs the attempt, for the reason of a crash ("worker", "web")
    origin: str
    #: error types that mean the infrastructure failed (the attempt errors, `requeue` attr honoured)
    infra_errors: tuple[type[BaseException], ...]

    def prepare_image(self) -> None: ...
    def prepare_inputs(self) -> None: ...
    def start_container(self) -> None: ...
    def phase(self, phase: Phase) -> None: ...
    def follow(self) -> None: ...
    def wait(self) -> ExitStatus | None: ...
    def aborted(self) -> bool: ...
    def interrupted(self) -> str | None: ...
    def collect_outputs(self) -> list[str]: ...
    def finish(self, report: FinishReport) -> None: ...
    def fail(self, reason: str, requeue: bool) -> None: ...
    def cleanup(self) -> None: ...


def run_attempt(b: AttemptBackend, *, adopt: bool = False, describe: Callable[[BaseException], str] = error_reason
                ) -> None:
    """Runs one attempt through `b` (see `AttemptBackend` for the order). `adopt`: the container already
    runs (a restarted worker or web) — skip to following its log. `describe` turns an infrastructure error
    into the reason shown to the user."""
    lg = LOG.bind(build=b.names.build_id, attempt=b.names.attempt, handle=b.names.handle)
    infra: tuple[type[BaseException], ...] = (AttemptError, *b.infra_errors)
    try:
        if not adopt:
            for step, ph in zip((b.prepare_image, b.prepare_inputs, b.start_container), PHASES, strict=True):
                step()
                b.phase(ph)
        b.follow()
        result = outcome(b.wait(), aborted=b.aborted(), interrupted=b.interrupted())
        outputs = b.collect_outputs() if result.keep_outputs else []
        b.finish(result.report(b.names.attempt, outputs))
        lg.info("build finished", status=str(result.status), exit_code=result.exit_code,
                reason=result.reason or None)
    except Lost as e:
        lg.info("build no longer ours; stopping it", why=str(e))
    except infra as e:
        reason = b.interrupted() or describe(e)
        requeue = bool(getattr(e, "requeue", False))
        lg.warning("build errored", reason=reason, requeue=requeue)
        _fail(b, reason, requeue, lg)
    except Exception as e:  # noqa: BLE001 - a bug must end the build errored, never hang it
        lg.exception("build attempt crashed")
        _fail(b, f"{b.origin} error: {e.__class__.__name__}: {e}", False, lg)
    finally:
        b.cleanup()


def _fail(b: AttemptBackend, reason: str, requeue: bool, lg: structlog.stdlib.BoundLogger) -> None:
    try:
        b.fail(reason, requeue)
    except Exception as e:  # noqa: BLE001 - reporting failed too: web's sweeper ends the build
        lg.warning("could not report the error", error=str(e))
