"""The Kubernetes API, as the runtime uses it: the one module of airside that imports the `kubernetes`
client (import-linter enforces it), so that the client library loads only when a `KubernetesRuntime` is
built.

* `load_api_client` makes an `ApiClient` from a kubeconfig, the in-cluster service account or the
  default kubeconfig.
* `start_job` / `stop_job` create a task's Secrets and Job (the Job then owning the Secrets) and delete
  them again, with its pods.
* `Cluster` is one namespace of one cluster: it reads Jobs, pods and events (as plain dicts, camelCase
  keys, as the API server sends them), watches a Job's pods, deletes pods and opens a container's log
  (`LogStream`).

Every failed request raises `ApiError`, a `RuntimeError_` whose message says what failed, the HTTP
status, the server's message and a hint (RBAC for a 403, reachability when there was no answer); a
missing object is not an error where the caller asked for it to be gone.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import cast

import urllib3
from kubernetes import config, watch
from kubernetes.client import ApiClient, BatchV1Api, Configuration, CoreV1Api
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from airside.runtime.base import RuntimeError_

from .names import JOB_NAME_LABEL, Manifest

__all__ = ["ApiClient", "ApiError", "Cluster", "LogStream", "load_api_client", "start_job", "stop_job"]

class ApiError(RuntimeError_):
    """A Kubernetes API request failed. `status` is the HTTP status (0: no answer); `transient` tells a
    failure worth a retry (the API server busy, the way to a kubelet broken); `detail` is the message
    without what was being done."""

    def __init__(self, message: str, *, status: int, transient: bool, detail: str) -> None:
        super().__init__(message)
        self.status, self.transient, self.detail = status, transient, detail


def load_api_client(kubeconfig: str | None = None) -> ApiClient:
    """A `kubernetes.client.ApiClient`: from `kubeconfig` if given, else in-cluster config inside a pod, else
    the default kubeconfig ($KUBECONFIG or ~/.kube/config). Raises `RuntimeError_` when none loads."""
    try:
        if kubeconfig:
            return config.new_client_from_config(config_file=str(kubeconfig))
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            cfg = Configuration()
            config.load_incluster_config(client_configuration=cfg)
            return ApiClient(cfg)
        return config.new_client_from_config()
    except (config.ConfigException, OSError) as e:
        where = kubeconfig or "the in-cluster service account or the default kubeconfig"
        raise RuntimeError_(f"cannot load a Kubernetes client configuration from {where}: {e} "
                            "(set kubernetes_kubeconfig / AIRSIDE_KUBERNETES_KUBECONFIG)") from e


def start_job(api_client: ApiClient, job: Manifest, secrets: Sequence[Manifest] = ()) -> Manifest:
    """Creates the Secrets (an existing one is replaced: the artifact token's, the image pull credentials'),
    the Job, then makes the Job each Secret's owner (so they go with it). Returns the created Job as a dict.
    On failure nothing is left behind. A Secret's content is never logged or put in an error."""
    core, batch = CoreV1Api(api_client), BatchV1Api(api_client)
    ns, name = job["metadata"]["namespace"], job["metadata"]["name"]
    names = [sec["metadata"]["name"] for sec in secrets]
    made: list[str] = []
    try:
        for sec in secrets:
            _create_secret(core, ns, sec)
            made.append(sec["metadata"]["name"])
        # The generated client names its model classes as bodies, but sends a plain dict as it is, which
        # keeps the manifest exactly as built (and as its golden files show it).
        created = batch.create_namespaced_job(ns, job)  # type: ignore[arg-type]
    except (ApiException, ApiError) as e:
        for secret in made:
            _delete(core.delete_namespaced_secret, secret, ns)
        if isinstance(e, ApiError):
            raise
        if e.status == 409:
            raise RuntimeError_(f"Job {ns}/{name} already exists (handle used twice? destroy it first)") from None
        raise _api_error(e, f"creating Job {ns}/{name}") from None
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": created.metadata and created.metadata.uid}
    for secret in names:
        try:
            core.patch_namespaced_secret(secret, ns, {"metadata": {"ownerReferences": [owner]}})
        except ApiException as e:
            stop_job(api_client, ns, name, names)
            raise _api_error(e, f"setting the owner of Secret {ns}/{secret}") from None
    result: Manifest = api_client.sanitize_for_serialization(created)
    return result


def _create_secret(core: CoreV1Api, ns: str, secret: Manifest) -> None:
    name = secret["metadata"]["name"]
    try:
        core.create_namespaced_secret(ns, secret)  # type: ignore[arg-type]  # a plain dict body, as in start_job
    except ApiException as e:
        if e.status != 409:
            raise _api_error(e, f"creating Secret {ns}/{name}") from None
        core.replace_namespaced_secret(name, ns, secret)  # type: ignore[arg-type]  # a plain dict body


def stop_job(api_client: ApiClient, namespace: str, name: str, secrets: Sequence[str] = (),
             grace_seconds: int | None = None) -> None:
    """Deletes the Job (propagationPolicy Background), its pods and the Secrets. A missing object is
    success; safe to call any number of times."""
    core, batch = CoreV1Api(api_client), BatchV1Api(api_client)
    try:
        _delete(batch.delete_namespaced_job, name, namespace, propagation_policy="Background",
                grace_period_seconds=grace_seconds)
        pods = core.list_namespaced_pod(namespace, label_selector=f"{JOB_NAME_LABEL}={name}").items
        for p in pods:
            _delete(core.delete_namespaced_pod, (p.metadata and p.metadata.name) or "", namespace,
                    grace_period_seconds=grace_seconds)
        for secret in secrets:
            _delete(core.delete_namespaced_secret, secret, namespace)
    except ApiException as e:
        raise _api_error(e, f"deleting Job {namespace}/{name}") from None


class Cluster:
    """One namespace of one cluster, through `api` (an `ApiClient`). API objects come back as plain dicts."""

    def __init__(self, api: ApiClient, namespace: str) -> None:
        self.api, self.namespace = api, namespace
        self.core, self.batch = CoreV1Api(api), BatchV1Api(api)

    def start(self, job: Manifest, secrets: Sequence[Manifest] = ()) -> Manifest:
        """`start_job` in this cluster (the manifests name their namespace)."""
        return start_job(self.api, job, secrets)

    def stop(self, job: str, secrets: Sequence[str] = (), grace_seconds: int | None = None) -> None:
        """`stop_job` in this namespace."""
        stop_job(self.api, self.namespace, job, secrets, grace_seconds)

    def read_secret(self, name: str) -> Manifest | None:
        """The Secret's metadata and type (never its data), or None when there is none."""
        try:
            sec = self._plain(self.core.read_namespaced_secret(name, self.namespace))
        except ApiException as e:
            if e.status == 404:
                return None
            raise _api_error(e, f"reading Secret {self.namespace}/{name}") from None
        return {k: v for k, v in sec.items() if k not in ("data", "stringData")}

    def read_job(self, name: str) -> Manifest | None:
        """The Job, or None when there is none."""
        try:
            return self._plain(self.batch.read_namespaced_job(name, self.namespace))
        except ApiException as e:
            if e.status == 404:
                return None
            raise _api_error(e, f"reading Job {self.namespace}/{name}") from None

    def list_jobs(self, label_selector: str) -> list[Manifest]:
        try:
            jobs = self.batch.list_namespaced_job(self.namespace, label_selector=label_selector).items
        except ApiException as e:
            raise _api_error(e, f"listing Jobs in {self.namespace}") from None
        return [self._plain(j) for j in jobs]

    def job_pods(self, job: str) -> tuple[list[Manifest], str]:
        """The pods of Job `job`, and the list's resourceVersion (to watch from)."""
        try:
            res = self.core.list_namespaced_pod(self.namespace, label_selector=f"{JOB_NAME_LABEL}={job}")
        except ApiException as e:
            raise _api_error(e, f"listing the pods of Job {self.namespace}/{job}") from None
        return [self._plain(p) for p in res.items], (res.metadata and res.metadata.resource_version) or ""

    def events(self, names: set[str]) -> list[Manifest]:
        """The events whose involvedObject is one of `names`: those readable (events only make messages
        better, so a 403 ends the reading with what was read, not with an error)."""
        out: list[Manifest] = []
        for n in sorted(names):
            try:
                res = self.core.list_namespaced_event(self.namespace, field_selector=f"involvedObject.name={n}")
            except ApiException as e:
                if e.status == 403:
                    return out
                raise _api_error(e, "listing events") from None
            out += [self._plain(x) for x in res.items]
        return out

    def watch_pods(self, job: str, resource_version: str, seconds: float) -> str | None:
        """Blocks until a pod of Job `job` changes after `resource_version`, or about `seconds` pass.
        Returns None, or why the watch ended early (410 Gone, a dropped connection: poll instead)."""
        w = watch.Watch()
        try:
            for _ in w.stream(self.core.list_namespaced_pod, self.namespace,
                              label_selector=f"{JOB_NAME_LABEL}={job}", resource_version=resource_version,
                              timeout_seconds=max(1, int(seconds)), _request_timeout=seconds + 10):
                break
        except (ApiException, OSError, ValueError) as e:
            return str(e)
        finally:
            w.stop()
        return None

    def delete_pod(self, name: str, grace_seconds: int | None) -> None:
        """Deletes a pod; a missing one is success."""
        try:
            _delete(self.core.delete_namespaced_pod, name, self.namespace, grace_period_seconds=grace_seconds)
        except ApiException as e:
            raise _api_error(e, f"deleting pod {name}") from None

    def open_log(self, pod: str, container: str, *, follow: bool, what: str) -> LogStream:
        """The log of a pod's container from its start (`follow`: then as it is written). A failure raises
        `ApiError` with the message "`what` failed: …"."""
        try:
            resp = self.core.read_namespaced_pod_log(pod, self.namespace, container=container, follow=follow,
                                                     _preload_content=False)
        except ApiException as e:
            raise _api_error(e, what) from None
        # without preloading, the client returns urllib3's response (its signature names the decoded text)
        return LogStream(cast(urllib3.HTTPResponse, resp))

    def _plain(self, obj: object) -> Manifest:
        result: Manifest = self.api.sanitize_for_serialization(obj)
        return result


class LogStream:
    """An open log request. Iterating gives the log's bytes as they come and ends with the log, or when
    the connection breaks (then `error` says why). Use it as a context manager: leaving it releases the
    connection."""

    def __init__(self, response: urllib3.HTTPResponse) -> None:
        self._response = response
        self.error: str | None = None

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._response.stream(65536, decode_content=False)
        except (OSError, HTTPError) as e:  # the connection to the API server or the kubelet dropped
            self.error = str(e)

    def __enter__(self) -> LogStream:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._response.release_conn()


def _delete(call: Callable[..., object], *args: object, **kwargs: object) -> None:
    """`call(*args, **kwargs)`, a delete request: a missing object (404) is success."""
    try:
        call(*args, **kwargs)
    except ApiException as e:
        if e.status != 404:
            raise


def _transient(e: ApiException) -> bool:
    """A request failing on the way to the kubelet (it restarted, the connection dropped), or the API
    server busy: worth a retry."""
    status = getattr(e, "status", None) or 0
    return status == 0 or status in (429, 502, 503, 504) or (
        status == 500 and bool(re.search(r"connection reset|connection refused|EOF|i/o timeout|dial|broken pipe",
                                         str(getattr(e, "body", "") or e), re.IGNORECASE)))


def _api_error(e: ApiException, what: str) -> ApiError:
    status = getattr(e, "status", None)
    body = getattr(e, "body", None) or str(e)
    try:
        body = json.loads(body).get("message", body)
    except (ValueError, TypeError, AttributeError):
        pass
    hint = ""
    if status == 403:
        hint = " (the service account lacks RBAC permissions: see docs/kubernetes-runtime.md for the Role)"
    elif status is None or status == 0:
        hint = " (is the API server reachable?)"

    def message(what: str) -> str:
        return f"{what} failed: {status or ''} {body}{hint}".replace("  ", " ")

    return ApiError(message(what), status=status or 0, transient=_transient(e), detail=message(""))
