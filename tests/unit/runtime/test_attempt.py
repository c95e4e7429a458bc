"""The one build-attempt lifecycle's pure parts: names, the outcome rule, and the order `run_attempt` drives a
backend through. The same lifecycle runs on real workers and Kubernetes in
tests/integration/test_builds_infra.py, tests/integration/test_execute.py and tests/e2e/test_attempt_outcomes.py;
this recording backend only pins the order and the error paths that are slow or rare to provoke for real."""

from __future__ import annotations

import pytest

from airside.core.schemas import BuildStatus, FinishReport, Phase
from airside.runtime import ExitStatus, RuntimeError_
from airside.runtime.attempt import KEEPS_OUTPUTS, AttemptError, AttemptNames, Lost, outcome, run_attempt
from airside.runtime.kubernetes import output_handle


def test_names_are_one_scheme() -> None:
    n = AttemptNames(42, 3)
    assert n.handle == "b42-a3" and n.key == "42.3"
    assert n.input_volume("src") == "b42-a3-in-src"
    assert n.output_volume("out") == "b42-a3-output-out" == output_handle(n.handle, "out")
    assert n.rootfs_volume == "b42-a3-rootfs"
    assert n.properties("input") == {"role": "input", "build": "42", "attempt": "3"}
    # caches are shared by cache key and path, not by attempt
    assert n.cache_volume("job-x", "/c") == AttemptNames(7, 1).cache_volume("job-x", "/c")
    assert n.cache_volume("job-x", "/c") != n.cache_volume("job-x", "/d")
    assert n.cache_volume("", "/c") != AttemptNames(43, 3).cache_volume("", "/c")


@pytest.mark.parametrize(("exit", "aborted", "interrupted", "status", "code", "reason", "keep"), [
    (ExitStatus(0), False, None, BuildStatus.succeeded, 0, "", True),
    (ExitStatus(7, "exit 7"), False, None, BuildStatus.failed, 7, "exit 7", False),
    (ExitStatus(137), True, None, BuildStatus.aborted, 137, "aborted", False),
    (ExitStatus(0), True, None, BuildStatus.aborted, 0, "aborted", False),  # abort wins over a clean exit
    (ExitStatus(137), True, "drain timeout", BuildStatus.errored, 137, "drain timeout", False),  # interrupt first
])
def test_outcome_rule(exit: ExitStatus, aborted: bool, interrupted: str | None, status: BuildStatus, code: int,
                      reason: str, keep: bool) -> None:
    o = outcome(exit, aborted=aborted, interrupted=interrupted)
    assert (o.status, o.exit_code, o.reason, o.keep_outputs) == (status, code, reason, keep)
    assert (o.status in KEEPS_OUTPUTS) == keep


def test_no_exit_status_is_an_infrastructure_error() -> None:
    with pytest.raises(AttemptError, match="vanished"):
        outcome(None, aborted=False, interrupted=None)


class Recorder:
    origin = "test"
    infra_errors: tuple[type[BaseException], ...] = (RuntimeError_,)

    def __init__(self, exit: ExitStatus | None = ExitStatus(0), raise_in: str = "", error: BaseException | None = None,
                 aborted: bool = False) -> None:
        self.names = AttemptNames(1, 1)
        self.calls: list[str] = []
        self.exit, self.raise_in, self.error, self._aborted = exit, raise_in, error, aborted
        self.report: FinishReport | None = None
        self.failed: tuple[str, bool] | None = None

    def _step(self, name: str) -> None:
        self.calls.append(name)
        if name == self.raise_in:
            raise self.error or RuntimeError_("boom")

    def prepare_image(self) -> None: self._step("image")
    def prepare_inputs(self) -> None: self._step("inputs")
    def start_container(self) -> None: self._step("start")
    def phase(self, phase: Phase) -> None: self.calls.append(str(phase))
    def follow(self) -> None: self._step("follow")
    def wait(self) -> ExitStatus | None:
        self._step("wait")
        return self.exit
    def aborted(self) -> bool: return self._aborted
    def interrupted(self) -> str | None: return None
    def collect_outputs(self) -> list[str]:
        self._step("outputs")
        return ["out"]
    def finish(self, report: FinishReport) -> None:
        self.calls.append("finish")
        self.report = report
    def fail(self, reason: str, requeue: bool) -> None:
        self.calls.append("fail")
        self.failed = (reason, requeue)
    def cleanup(self) -> None: self.calls.append("cleanup")


def test_phases_in_order_and_outputs_of_a_success() -> None:
    b = Recorder()
    run_attempt(b)
    assert b.calls == ["image", "image_ready", "inputs", "inputs_ready", "start", "started", "follow", "wait",
                       "outputs", "finish", "cleanup"]
    assert b.report is not None and b.report.status == BuildStatus.succeeded and b.report.outputs == ["out"]


def test_a_failed_task_keeps_no_outputs() -> None:
    b = Recorder(exit=ExitStatus(3, "exit 3"))
    run_attempt(b)
    assert "outputs" not in b.calls
    assert b.report is not None and (b.report.status, b.report.exit_code, b.report.outputs) == (BuildStatus.failed, 3, [])


def test_adopting_skips_setup() -> None:
    b = Recorder()
    run_attempt(b, adopt=True)
    assert b.calls[:2] == ["follow", "wait"] and "image" not in b.calls and "started" not in b.calls


def test_infrastructure_error_errors_with_the_reason_and_requeue_flag() -> None:
    err = RuntimeError_("node went away")
    err.requeue = True  # type: ignore[attr-defined]  # as the kubernetes runtime's InfraFailure carries it
    b = Recorder(raise_in="wait", error=err)
    run_attempt(b)
    assert b.failed == ("node went away", True) and b.calls[-2:] == ["fail", "cleanup"] and b.report is None


def test_lost_reports_nothing_and_a_bug_errors_naming_it() -> None:
    b = Recorder(raise_in="inputs", error=Lost("requeued"))
    run_attempt(b)
    assert b.failed is None and b.report is None and b.calls[-1] == "cleanup"
    b = Recorder(raise_in="start", error=KeyError("x"))
    run_attempt(b)
    assert b.failed == ("test error: KeyError: 'x'", False) and b.calls[-1] == "cleanup"


def test_report_failure_still_cleans_up() -> None:
    class Unreachable(Recorder):
        def fail(self, reason: str, requeue: bool) -> None:
            raise OSError("web unreachable")

    b = Unreachable(raise_in="follow")
    run_attempt(b)
    assert b.calls[-1] == "cleanup"
