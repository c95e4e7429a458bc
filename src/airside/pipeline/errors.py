"""How a pipeline config problem is reported.

A problem is airside.task's `TaskConfigProblem` (``file:line: field: message``), reused as it is:
`Problem` is that class under the name this package uses. `PipelineConfigError` carries every error
of one config (and its warnings, which alone never make it invalid unless validation is strict).
"""

from __future__ import annotations

from airside.task.errors import TaskConfigProblem

__all__ = ["PipelineConfigError", "Problem", "sort_problems"]

Problem = TaskConfigProblem


def sort_problems(problems: list[Problem]) -> list[Problem]:
    """By line (problems without a line first), keeping the order found within a line."""
    return sorted(problems, key=lambda p: p.line or 0)


class PipelineConfigError(ValueError):
    """An invalid pipeline config: ``problems`` holds every error, ``warnings`` what would only be
    warned about; ``str()`` lists the errors, one per line."""

    def __init__(self, filename: str, problems: list[Problem], warnings: list[Problem] | None = None) -> None:
        self.filename = filename
        self.problems = problems
        self.warnings = warnings or []
        n = len(problems)
        header = f"invalid pipeline config {filename} ({n} problem{'s' if n != 1 else ''}):"
        super().__init__("\n".join([header, *(f"  {p}" for p in problems)]))
