"""What has become of a task's Job: the watchdog's `Verdict`, and the `InfraFailure` that `wait` raises
when the verdict is that the infrastructure, not the task, ended the run."""

from __future__ import annotations

from dataclasses import dataclass

from airside.runtime.base import RuntimeError_

__all__ = ["InfraFailure", "Verdict"]


class InfraFailure(RuntimeError_):
    """The infrastructure, not the task, ended the run. `kind` is a short machine-readable word (see the
    package docstring); `requeue` is True when running it again elsewhere may well succeed."""

    def __init__(self, reason: str, *, kind: str = "Infrastructure", requeue: bool = False) -> None:
        super().__init__(reason)
        self.reason, self.kind, self.requeue = reason, kind, requeue


@dataclass(frozen=True)
class Verdict:
    """What `classify` makes of a Job: `pending` / `running` (keep waiting), `exited` (`code`, `reason`:
    the task's own result) or `infra` (`kind`, `reason`, `requeue`)."""

    state: str
    code: int | None = None
    reason: str = ""
    kind: str = ""
    requeue: bool = False

    @property
    def done(self) -> bool:
        return self.state in ("exited", "infra")
