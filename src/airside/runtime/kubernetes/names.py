"""The vocabulary of the kubernetes runtime's modules (pure): the names airside gives Kubernetes objects
(a task's Job and Secret, label values), the labels and annotations it sets, its containers' names, the
default handles of its output volumes, and `Manifest`, the shape objects have here (plain JSON data).

Kubernetes limits names to DNS labels and label values to 63 characters of a smaller alphabet; a handle,
build or step that does not fit is shortened and given a hash of the whole, so distinct values keep
distinct names.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from airside.runtime.attempt import output_volume

__all__ = [
    "ANNOTATION_HANDLE", "ANNOTATION_STEP", "FETCH", "JOB_NAME_LABEL", "LABEL_ATTEMPT", "LABEL_BUILD",
    "LABEL_STEP", "MANAGED_BY", "TASK", "TOKEN_ENV", "UPLOAD", "Manifest",
    "job_name", "label_value", "output_handle", "pull_secret_name", "secret_name",
]  # fmt: skip

Manifest = dict[str, Any]  # a Kubernetes object as plain JSON data (camelCase keys, as the API server sends it)

MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_BUILD, LABEL_ATTEMPT, LABEL_STEP = "airside.dev/build", "airside.dev/attempt", "airside.dev/step"
ANNOTATION_HANDLE, ANNOTATION_STEP = "airside.dev/handle", "airside.dev/step"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"  # set by the Job controller on the Job's pods
FETCH, TASK, UPLOAD = "fetch-inputs", "task", "upload-outputs"  # the pod's container names
STDIN_ENV = "AIRSIDE_STDIN"  # the task container's env var holding its stdin (from the Job's Secret)
TOKEN_ENV = "AIRSIDE_BAGGAGECLAIM_TOKEN"  # the airside steps' env var holding the artifact-store token

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


def _digest(text: str, n: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def job_name(handle: str) -> str:
    """The Job's name for a handle: the handle itself when it is a DNS label of at most 52 characters
    (pods add a suffix), else a sanitised prefix plus a hash of the handle."""
    if _DNS_LABEL.match(handle) and len(handle) <= 52:
        return handle
    s = re.sub(r"[^a-z0-9]+", "-", handle.lower()).strip("-")[:43].strip("-") or "task"
    return f"{s}-{_digest(handle)}"


def secret_name(handle: str) -> str:
    """The name of the Secret holding a task's artifact-store token."""
    return f"{job_name(handle)}-artifacts"


def pull_secret_name(handle: str) -> str:
    """The name of the Secret holding a task's image pull credentials (image_resource.source.username/password)."""
    return f"{job_name(handle)}-pull"


def label_value(value: str) -> str:
    """`value` as a valid label value: itself when it is one (or empty), else a sanitised prefix plus a
    hash of it."""
    if value == "" or (_LABEL_VALUE.match(value) and len(value) <= 63):
        return value
    s = re.sub(r"[^A-Za-z0-9_.-]+", "-", value).strip("-_.")[:54].strip("-_.")
    return f"{s}-{_digest(value)}" if s else _digest(value)


def output_handle(handle: str, output: str) -> str:
    """The default artifact-store handle of a task's output volume: the build-attempt lifecycle's name
    (`airside.runtime.attempt.output_volume`), so a Job and a worker name outputs alike."""
    return output_volume(handle, output)
