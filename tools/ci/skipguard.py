"""A pytest plugin (registered by tests/conftest.py): in CI, a skipped test fails the run unless
tools/ci/skips.allow names it with a reason.

A skip says "this machine cannot run that"; on CI the machine is meant to run everything, so a skip there is
a test that did not run while the run stayed green (the airside image missing from the kind nodes, a cluster
that did not answer). Active when CI is true (`.ci/run` exports CI=true) or AIRSIDE_SKIP_GUARD=1; elsewhere
skips stay skips. The allow-list: one `<node id glob>  # why` a line (fnmatch against the node id, e.g.
`tests/unit/x.py::test_y[*]`); an entry without a reason is an error. AIRSIDE_SKIPS_ALLOW names another file.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ALLOW = Path(__file__).with_name("skips.allow")


def in_ci() -> bool:
    """CI=true (or 1/yes), as CI systems and .ci/run set it."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def active() -> bool:
    return in_ci() or os.environ.get("AIRSIDE_SKIP_GUARD", "") == "1"


def read_allow(path: Path) -> dict[str, str]:
    """glob -> reason. Raises ValueError on an entry with no reason."""
    allowed: dict[str, str] = {}
    for n, raw in enumerate(path.read_text().splitlines(), 1) if path.exists() else ():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        glob, _, why = line.partition("#")
        if not why.strip():
            raise ValueError(f"{path}:{n}: `{line}` gives no reason (`<node id glob>  # why`)")
        allowed[glob.strip()] = why.strip()
    return allowed


def _reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


@dataclass(eq=False)  # a plugin object: hashable by identity
class SkipGuard:
    allow_file: Path
    allowed: dict[str, str]
    skipped: dict[str, str] = field(default_factory=dict)  # node id -> reason

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.skipped:  # a module-level skip (importorskip, pytest.skip(allow_module_level=True))
            self.skipped[report.nodeid] = _reason(report)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.skipped and not hasattr(report, "wasxfail"):
            self.skipped[report.nodeid] = _reason(report)

    def unexpected(self) -> dict[str, str]:
        return {n: why for n, why in self.skipped.items()
                if not any(fnmatch.fnmatchcase(n, g) for g in self.allowed)}

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.unexpected() and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        bad = self.unexpected()
        allowed = {n: why for n, why in self.skipped.items() if n not in bad}
        if allowed:
            terminalreporter.write_sep("-", f"skip guard: {len(allowed)} skipped as {self.allow_file} allows")
            for n, why in sorted(allowed.items()):
                terminalreporter.write_line(f"{n}: {why}")
        if bad:
            terminalreporter.write_sep("=", f"skip guard: {len(bad)} skipped test(s) CI is meant to run", red=True)
            for n, why in sorted(bad.items()):
                terminalreporter.write_line(f"SKIPPED {n}: {why}", red=True)
            terminalreporter.write_line(f"fix the cause, or list the test in {self.allow_file} with the reason "
                                        "this machine cannot run it")


def register(config: pytest.Config) -> None:
    if not active():
        return
    path = Path(os.environ.get("AIRSIDE_SKIPS_ALLOW") or ALLOW)
    try:
        allowed = read_allow(path)
    except ValueError as e:
        raise pytest.UsageError(str(e)) from None
    config.pluginmanager.register(SkipGuard(path, allowed), "airside-skipguard")
