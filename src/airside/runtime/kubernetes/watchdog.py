"""The watchdog (pure): what has become of a task's Job, read from the Job, its pods and their events.

`classify(job, pods, events, ...) -> Verdict` takes API objects as plain dicts (camelCase keys, as the API
server sends them) and tries its rules in order, the first that recognises something deciding:

1. no Job → `JobDeleted`; the Job past its deadline → `DeadlineExceeded`; no pod → the Job's own state
   (complete, failed, `FailedCreate`, `ScheduleTimeout` or pending);
2. for the newest pod: taken away by the node or a controller (`Evicted`, `NodeLost`, `Disrupted`:
   requeue); the task container's own result (exited, or `StartError`, `UploadOutputs`); `FetchInputs`;
   containers that cannot start (`ImagePull`, `CreateContainer`); `PodDeleted` / `PodFailed`; not yet
   scheduled (`PVCNotBound`, `Unschedulable`, `ScheduleTimeout`, pending); scheduled but no container
   started (`PodStuck`, pending); else running.

Events are only read when they can change the answer (`wants_events`), from the objects `event_sources`
names. The small readers of API dicts (`container_state`, `condition`, …) are shared with the runtime.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .names import FETCH, TASK, UPLOAD, Manifest
from .verdict import Verdict

__all__ = [
    "CONFIG_REASONS", "IMAGE_PULL_REASONS", "REQUEUE_POD_REASONS", "STUCK_EVENT_REASONS",
    "classify", "claim_names", "condition", "container_state", "container_status", "event_sources",
    "is_true", "wants_events",
]  # fmt: skip

IMAGE_PULL_REASONS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")
CONFIG_REASONS = ("CreateContainerConfigError", "CreateContainerError")
REQUEUE_POD_REASONS = ("Evicted", "Preempting", "Shutdown", "NodeShutdown", "Terminated", "NodeLost",
                       "UnexpectedAdmissionError", "OutOfcpu", "OutOfmemory", "OutOfpods")
STUCK_EVENT_REASONS = ("FailedMount", "FailedAttachVolume", "FailedCreatePodSandBox", "FailedSync")

Obj = Mapping[str, Any]  # an API object as plain data


# --------------------------------------------------------------------------- reading API objects


def container_status(pod: Obj, name: str) -> Manifest | None:
    """The status of the pod's (init) container `name`, if the pod reports one."""
    return next((s for s in _statuses(pod) if s.get("name") == name), None)


def container_state(pod: Obj, name: str) -> Manifest:
    """The state of container `name` (`{"running": …}`, `{"terminated": …}`, `{"waiting": …}`), or {}."""
    return (container_status(pod, name) or {}).get("state") or {}


def condition(obj: Obj, ctype: str) -> Manifest | None:
    """The object's status condition of type `ctype`, if any."""
    return next((c for c in ((obj.get("status") or {}).get("conditions") or []) if c.get("type") == ctype), None)


def is_true(obj: Obj, ctype: str) -> bool:
    """Whether the object has a condition `ctype` with status "True"."""
    return (condition(obj, ctype) or {}).get("status") == "True"


def claim_names(pod: Obj) -> list[str]:
    """The PersistentVolumeClaims the pod mounts."""
    return [v["persistentVolumeClaim"]["claimName"] for v in ((pod.get("spec") or {}).get("volumes") or [])
            if v.get("persistentVolumeClaim")]


def wants_events(verdict: Verdict) -> bool:
    """Whether events may explain more than the Job and pods did (then classify again with them)."""
    return verdict.state == "pending" or verdict.kind in ("Unschedulable", "ScheduleTimeout", "PodStuck")


def event_sources(job: str, pods: Iterable[Obj]) -> set[str]:
    """The names of the objects whose events `classify` reads: the Job, its pods and their claims."""
    names = {job}
    for p in pods:
        names |= {p["metadata"]["name"], *claim_names(p)}
    return names


def _statuses(pod: Obj) -> list[dict[str, Any]]:
    st = pod.get("status") or {}
    return [*(st.get("initContainerStatuses") or []), *(st.get("containerStatuses") or [])]


def _containers(pod: Obj) -> list[dict[str, Any]]:
    spec = pod.get("spec") or {}
    return [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]


def _terminated(pod: Obj, name: str) -> dict[str, Any] | None:
    return container_state(pod, name).get("terminated")


def _ts(value: Any) -> datetime | None:
    if not value:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _tail(message: str, n: int = 800) -> str:
    message = (message or "").strip()
    return message if len(message) <= n else "…" + message[-n:]


def _event_time(e: Obj) -> str:
    return str(e.get("lastTimestamp") or e.get("eventTime") or e.get("firstTimestamp") or "")


def _newest_event(events: Sequence[Obj], names: set[str], reasons: tuple[str, ...] | None = None,
                  warning: bool = True) -> Obj | None:
    """The newest event about one of `names` (a Warning, unless not `warning`; with one of `reasons`)."""
    def matches(e: Obj) -> bool:
        return ((e.get("involvedObject") or {}).get("name") in names
                and (not warning or e.get("type") == "Warning")
                and (reasons is None or e.get("reason") in reasons))

    return max(filter(matches, events), key=_event_time, default=None)


# --------------------------------------------------------------------------- classify


def classify(job: Obj | None, pods: Sequence[Obj], events: Sequence[Obj] = (), *, now: datetime | None = None,
             schedule_timeout: float | None = None) -> Verdict:
    """What has become of a task's Job. Arguments are API objects as plain dicts (camelCase keys, as the
    API server sends them); `events` are those whose involvedObject is the Job, its pod or the pod's PVCs;
    `now` defaults to the current time; `schedule_timeout` (seconds) is how long a pod may stay
    unscheduled, or scheduled with no container started, before it is a failure (None: forever)."""
    now = now or datetime.now(UTC)
    if job is None:
        return Verdict("infra", kind="JobDeleted",
                       reason="the Job was deleted outside airside before the task finished (by a person, a "
                              "namespace deletion or ttlSecondsAfterFinished)")
    if _deadline_condition(job):
        return _deadline_verdict(job)
    pod = max(pods, key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp") or ""), default=None)
    if pod is None:
        return _without_pod(job, events, now, schedule_timeout)
    seen = _Seen(job, pod, events, now, schedule_timeout)
    for rule in _POD_RULES:
        verdict = rule(seen)
        if verdict is not None:
            return verdict
    return Verdict("running")


def _deadline_condition(job: Obj) -> bool:
    return any(is_true(job, ctype) and (condition(job, ctype) or {}).get("reason") == "DeadlineExceeded"
               for ctype in ("FailureTarget", "Failed"))


def _deadline(job: Obj) -> Any:
    return (job.get("spec") or {}).get("activeDeadlineSeconds")


def _deadline_verdict(job: Obj) -> Verdict:
    return Verdict("infra", kind="DeadlineExceeded",
                   reason=f"the task ran longer than its timeout ({_deadline(job)}s, activeDeadlineSeconds; "
                          "setting kubernetes_task_timeout) and Kubernetes stopped it (DeadlineExceeded)")


def _created(job: Obj, now: datetime) -> datetime:
    return _ts((job.get("metadata") or {}).get("creationTimestamp")) or now


# --------------------------------------------------------------------------- a Job without a pod


def _without_pod(job: Obj, events: Sequence[Obj], now: datetime, schedule_timeout: float | None) -> Verdict:
    jname = (job.get("metadata") or {}).get("name", "")
    verdict = _job_conditions(job, jname)
    if verdict is not None:
        return verdict
    ev = _newest_event(events, {jname}, ("FailedCreate",))
    if ev:
        return Verdict("infra", kind="FailedCreate",
                       reason=f"Kubernetes could not create the pod of Job {jname}: {ev.get('message')}")
    status = job.get("status") or {}
    if status.get("failed") or status.get("succeeded"):
        # the pod ran and is gone (deleted or garbage-collected) before the Job's condition was written
        return Verdict("pending")
    if schedule_timeout is not None and (now - _created(job, now)).total_seconds() > schedule_timeout:
        return Verdict("infra", kind="ScheduleTimeout",
                       reason=f"Job {jname} has had no pod for {schedule_timeout:g}s (kubernetes_schedule_timeout)")
    return Verdict("pending")


def _job_conditions(job: Obj, jname: str) -> Verdict | None:
    if is_true(job, "Complete"):
        return Verdict("exited", code=0)
    if not is_true(job, "Failed"):
        return None
    failed = condition(job, "Failed") or {}
    if failed.get("reason") == "BackoffLimitExceeded":
        return Verdict("infra", kind="PodDeleted",
                       reason=f"the pod of Job {jname} was deleted before the task finished (not by airside)")
    return Verdict("infra", kind="JobFailed",
                   reason=f"Job {jname} failed ({failed.get('reason')}): {failed.get('message', '')}")


# --------------------------------------------------------------------------- the rules for a pod


@dataclass(frozen=True)
class _Seen:
    """A Job and its newest pod, as the pod rules see them."""

    job: Obj
    pod: Obj
    events: Sequence[Obj]
    now: datetime
    schedule_timeout: float | None

    @property
    def name(self) -> str:
        return str((self.pod.get("metadata") or {}).get("name", ""))

    @property
    def status(self) -> Obj:
        return self.pod.get("status") or {}

    @property
    def node(self) -> str:
        return str((self.pod.get("spec") or {}).get("nodeName") or "?")

    @property
    def age(self) -> float:
        """Seconds since the Job was created."""
        return (self.now - _created(self.job, self.now)).total_seconds()

    def timed_out(self, seconds: float) -> bool:
        return self.schedule_timeout is not None and seconds > self.schedule_timeout


def _taken_away(s: _Seen) -> Verdict | None:
    """The node or a controller took the pod away: infrastructure, worth running again."""
    reason = s.status.get("reason")
    if reason in REQUEUE_POD_REASONS and s.status.get("phase") == "Failed":
        return Verdict("infra", kind="Evicted" if reason == "Evicted" else "NodeLost", requeue=True,
                       reason=f"pod {s.name} on node {s.node} failed with {reason}: {s.status.get('message', '')}".rstrip(": "))
    dt = condition(s.pod, "DisruptionTarget")
    if dt and dt.get("status") == "True":
        return Verdict("infra", kind="Disrupted", requeue=True,
                       reason=f"pod {s.name} on node {s.node} was disrupted ({dt.get('reason')}): {dt.get('message', '')}")
    return None


def _task_result(s: _Seen) -> Verdict | None:
    """The task container's own result, once it has terminated (with its outputs uploaded, if any)."""
    term = _terminated(s.pod, TASK)
    if not term:
        return None
    if term.get("reason") in ("StartError", "ContainerCannotRun"):
        return Verdict("infra", kind="StartError",
                       reason=f"the task container could not start: {_tail(term.get('message', ''))}")
    code = int(term.get("exitCode", 0))
    reason = term.get("reason") or ""
    reason = "" if reason in ("Error", "Completed") else reason
    if code != 0 or UPLOAD not in (c["name"] for c in _containers(s.pod)):
        return Verdict("exited", code=code, reason=reason)
    return _upload_result(s, reason)


def _upload_result(s: _Seen, reason: str) -> Verdict | None:
    up = _terminated(s.pod, UPLOAD)
    if not up:
        return None  # still uploading
    if int(up.get("exitCode", 0)) == 0:
        return Verdict("exited", code=0, reason=reason)
    return Verdict("infra", kind="UploadOutputs",
                   reason=f"uploading outputs to the artifact store failed (exit {up.get('exitCode')}): "
                          f"{_tail(up.get('message', ''))}")


def _fetch_failed(s: _Seen) -> Verdict | None:
    fetch = _terminated(s.pod, FETCH)
    if fetch and int(fetch.get("exitCode", 0)) != 0:
        return Verdict("infra", kind="FetchInputs",
                       reason=f"fetching inputs from the artifact store failed (exit {fetch.get('exitCode')}): "
                              f"{_tail(fetch.get('message', ''))}")
    return None


def _cannot_start(s: _Seen) -> Verdict | None:
    """A container waits for something that will not come: its image, or a valid configuration."""
    images = {c["name"]: c.get("image", "") for c in _containers(s.pod)}
    for st in _statuses(s.pod):
        waiting = (st.get("state") or {}).get("waiting") or {}
        why = waiting.get("reason")
        if why in IMAGE_PULL_REASONS:
            image = st.get("image") or images.get(st.get("name", ""), "?")
            return Verdict("infra", kind="ImagePull",
                           reason=f"cannot pull image {image!r} for container {st.get('name')} ({why}): "
                                  f"{waiting.get('message', '').strip()}".rstrip(": "))
        if why in CONFIG_REASONS:
            return Verdict("infra", kind="CreateContainer",
                           reason=f"container {st.get('name')} cannot be created ({why}): {waiting.get('message', '')}")
    return None


def _pod_deleted(s: _Seen) -> Verdict | None:
    if not s.pod.get("metadata", {}).get("deletionTimestamp") or _terminated(s.pod, TASK):
        return None
    deadline = _deadline(s.job)
    started = _ts((s.job.get("status") or {}).get("startTime"))
    if deadline and started and (s.now - started).total_seconds() >= float(deadline):
        # the Job controller deletes the pod of a Job past its deadline before it sets the condition
        return _deadline_verdict(s.job)
    return Verdict("infra", kind="PodDeleted", reason=f"pod {s.name} was deleted before the task finished (not by airside)")


def _pod_failed(s: _Seen) -> Verdict | None:
    if s.status.get("phase") != "Failed":
        return None
    return Verdict("infra", kind="PodFailed",
                   reason=f"pod {s.name} failed ({s.status.get('reason', '?')}): {s.status.get('message', '')}".rstrip(": "))


def _unscheduled(s: _Seen) -> Verdict | None:
    """The pod is not scheduled (yet): why, once it is clear it will not be; else pending."""
    sched = condition(s.pod, "PodScheduled")
    if sched and sched.get("status") == "True":
        return None
    ev = _newest_event(s.events, {s.name}, ("FailedScheduling",))
    msg = (sched or {}).get("message") or (ev or {}).get("message", "")
    return (_pvc_not_bound(s, msg) or _unschedulable(s, sched, msg) or _schedule_timeout(s, msg)
            or Verdict("pending"))


def _pvc_not_bound(s: _Seen, msg: str) -> Verdict | None:
    if "PersistentVolumeClaim" not in msg and "unbound" not in msg:
        return None
    claims = claim_names(s.pod)
    pvc_ev = _newest_event(s.events, set(claims))
    extra = f"; {pvc_ev.get('reason')}: {pvc_ev.get('message')}" if pvc_ev else ""
    return Verdict("infra", kind="PVCNotBound",
                   reason=f"pod {s.name} cannot be scheduled: PersistentVolumeClaim "
                          f"{', '.join(claims) or '?'} is not bound ({msg}{extra})")


def _unschedulable(s: _Seen, sched: Obj | None, msg: str) -> Verdict | None:
    """The scheduler found no node: a failure, unless a cluster autoscaler is adding one (then only once
    the schedule timeout has passed)."""
    if (sched or {}).get("reason") != "Unschedulable":
        return None
    scale_up = _newest_event(s.events, {s.name}, ("TriggeredScaleUp",), warning=False)
    if scale_up and not s.timed_out(s.age):
        return None
    return Verdict("infra", kind="Unschedulable",
                   reason=f"no node can run pod {s.name}: {msg or 'Unschedulable'} (check the task's "
                          "container_limits and the settings kubernetes_node_selector / kubernetes_tolerations)")


def _schedule_timeout(s: _Seen, msg: str) -> Verdict | None:
    if not s.timed_out(s.age):
        return None
    return Verdict("infra", kind="ScheduleTimeout",
                   reason=f"pod {s.name} was not scheduled within {s.schedule_timeout:g}s "
                          f"(kubernetes_schedule_timeout){': ' + msg if msg else ''}")


def _not_started(s: _Seen) -> Verdict | None:
    """Scheduled, but no container has started: `PodStuck` once a mount or the sandbox keeps failing past
    the schedule timeout, else pending."""
    if any("running" in (st.get("state") or {}) or "terminated" in (st.get("state") or {})
           for st in _statuses(s.pod)):
        return None
    sched = condition(s.pod, "PodScheduled") or {}
    since = (s.now - (_ts(sched.get("lastTransitionTime")) or _created(s.job, s.now))).total_seconds()
    ev = _newest_event(s.events, {s.name}, STUCK_EVENT_REASONS) if s.timed_out(since) else None
    if ev:
        return Verdict("infra", kind="PodStuck",
                       reason=f"pod {s.name} on node {s.node} has not started any container within "
                              f"{s.schedule_timeout:g}s of being scheduled: {ev.get('reason')}: {ev.get('message')}")
    return Verdict("pending")


_POD_RULES: tuple[Callable[[_Seen], Verdict | None], ...] = (
    _taken_away, _task_result, _fetch_failed, _cannot_start, _pod_deleted, _pod_failed, _unscheduled, _not_started,
)
