"""The one settings model.

Every setting airside has lives here, once. Environment variables (``AIRSIDE_<NAME>``), CLI flags
(``--name``), chart values, compose env and BOSH properties are all derived from this model: never
list a setting twice by hand. Each field says which roles use it (``roles``) so that each command
only grows the flags it reads.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic.json_schema import JsonDict
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "AIRSIDE_"

# roles: which commands read a setting. "client" = operator commands and execute.
WEB, WORKER, BAGGAGECLAIM, CLIENT, COMMON = "web", "worker", "baggageclaim", "client", "common"
WORKER_STATE_FILE = "state"  # in the work dir: the worker's readiness probe reads it
DEFAULT_RESOURCE_TYPES_DIR = Path("/var/cache/airside/resource-types")  # tools/resources/build.sh's output


def _f(default: Any, description: str, *roles: str, secret: bool = False, file: bool = False,
       secret_file: bool = False, **kw: Any) -> Any:
    """A setting. `secret`: a credential the deployment generates (tokens). `file`: a path to a file the
    operator provides (certificates, keys); deployments that hand out file *contents* (BOSH properties)
    write it for the binary. `secret_file`: such a file holds a secret (a private key)."""
    extra: JsonDict = {"roles": [*roles], "secret": secret, "file": file or secret_file, "secret_file": secret_file}
    return Field(default, description=description, json_schema_extra=extra, **kw)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", validate_default=True)

    # --- common ---------------------------------------------------------------------------
    log_level: Literal["debug", "info", "warning", "error"] = _f("info", "Log level.", COMMON)
    log_format: Literal["auto", "json", "console"] = _f(
        "auto", "Log format: json (one object per line), console, or auto (console on a TTY).", COMMON
    )
    data_dir: Path = _f(Path.home() / ".airside", "Directory for the SQLite database, keys and worker state.", COMMON)

    # --- web -------------------------------------------------------------------------------
    bind_host: str = _f("127.0.0.1", "Address web listens on.", WEB)
    bind_port: int = _f(8080, "Port web listens on.", WEB, ge=0, le=65535)
    database_url: str = _f(
        "", "SQLAlchemy URL of the database; empty means an SQLite file in data_dir. postgresql://… for PostgreSQL.", WEB
    )
    auto_migrate: bool = _f(True, "Apply database migrations when web starts.", WEB)
    database_wait_timeout: float = _f(
        120.0, "Seconds web waits at start for an unreachable database (it logs each retry) before it exits.",
        WEB, ge=0,
    )
    heartbeat_ttl: float = _f(30.0, "Seconds without a heartbeat after which a worker is stalled.", WEB, gt=0)
    stalled_prune_after: float = _f(
        600.0, "Seconds a worker may stay stalled before web prunes it; 0 disables auto-prune.", WEB, ge=0
    )
    sweep_interval: float = _f(2.0, "Seconds between web's registry sweeps (stall detection, auto-prune).", WEB, gt=0)
    max_request_bytes: int = _f(1 << 20, "Largest JSON request body web accepts, in bytes.", WEB, gt=0)
    authorized_worker_keys: Path | None = _f(
        None, "File of worker public keys (one `airside-ed25519 <base64>` per line) allowed to register.", WEB,
        file=True,
    )
    tls_cert_file: Path | None = _f(
        None, "PEM certificate (chain) web serves HTTPS with, together with tls_key_file; unset: plain HTTP.", WEB,
        file=True,
    )
    tls_key_file: Path | None = _f(None, "PEM private key of tls_cert_file.", WEB, file=True, secret_file=True)

    # --- builds and scheduling (web) ---------------------------------------------------------
    scheduler_strategy: Literal["fewest-build-containers", "volume-locality", "random"] = _f(
        "fewest-build-containers",
        "How web picks a worker for a task: fewest running build containers, the worker already holding the "
        "task's caches/image (ties: fewest containers), or random.", WEB,
    )
    requeue_budget: int = _f(
        1, "Times a build interrupted by the infrastructure (worker lost, new boot epoch) is queued again before "
        "it ends errored; 0 disables requeueing.", WEB, ge=0,
    )
    max_upload_bytes: int = _f(8 << 30, "Largest input/output artifact (tar, as sent) web accepts, in bytes.", WEB, gt=0)
    artifact_ttl: float = _f(
        86400.0, "Seconds web keeps a finished build's uploaded inputs and produced outputs.", WEB, gt=0
    )
    cache_ttl: float = _f(
        7 * 86400.0, "Seconds a task cache or image volume may go unused before workers are told to destroy it.",
        WEB, gt=0,
    )

    # --- shared by web and its clients -------------------------------------------------------
    token: SecretStr | None = _f(None, "Bearer token for operator/client calls to web.", WEB, CLIENT, secret=True)
    worker_token: SecretStr | None = _f(
        None, "Shared token workers present to web (alternative to a worker key pair).", WEB, WORKER, secret=True
    )
    web_url: str = _f("http://127.0.0.1:8080", "URL of web, as workers and clients reach it.", WORKER, CLIENT)
    tls_ca_file: Path | None = _f(
        None, "PEM CA certificate(s) that verify web's certificate when web_url is https; unset: the system's CAs.",
        WORKER, CLIENT, file=True,
    )

    # --- worker ----------------------------------------------------------------------------
    worker_name: str = _f(socket.gethostname(), "Name the worker registers under.", WORKER)
    platform: str = _f("linux", "Platform the worker advertises.", WORKER)
    tags: Annotated[list[str], NoDecode] = _f([], "Worker tags (comma separated in env/flags).", WORKER)
    team: str | None = _f(None, "Team the worker is dedicated to; empty means all teams.", WORKER)
    ephemeral: bool = _f(False, "Ephemeral worker: SIGTERM retires instead of landing.", WORKER)
    heartbeat_interval: float = _f(10.0, "Seconds between worker heartbeats.", WORKER, gt=0)
    drain_timeout: float = _f(
        300.0, "Seconds a landing/retiring worker waits for running work before it stops anyway.", WORKER, ge=0
    )
    worker_key: Path | None = _f(
        None, "Worker private key file from `airside keygen` (instead of worker_token).", WORKER, secret_file=True
    )
    work_dir: Path | None = _f(None, "Worker state directory; empty means data_dir/worker.", WORKER)
    runtime_url: str = _f("", "Runtime endpoint the worker advertises (empty: none).", WORKER)

    worker_runtime: Literal["oci", "process"] = _f(
        "oci", "How the worker runs task containers: oci (runc) or process (plain subprocess, NO isolation; for "
        "machines without runc).", WORKER,
    )
    reaper_interval: float = _f(
        30.0, "Seconds between the worker reaper's reports to web (garbage collection of containers/volumes).",
        WORKER, gt=0,
    )
    allow_privileged_tasks: bool = _f(
        False, "Run privileged tasks (airside execute -p): on workers a container with every capability and "
        "writable /sys; as Jobs securityContext.privileged. Off: such a build errors naming this setting.",
        WEB, WORKER,
    )
    max_concurrent_tasks: int = _f(8, "Tasks a worker runs at once; web places no more than this.", WORKER, ge=1)
    resource_types_dir: Path | None = _f(
        None, "Directory of resource types the worker offers, one <type>/ each with resource_metadata.json and "
        "rootfs/ (tools/resources/build.sh makes them); empty means /var/cache/airside/resource-types when it "
        "exists, else none.", WORKER,
    )

    # --- container networking (worker, oci runtime; airside.runtime.net) ---------------------------
    container_network: Literal["bridge", "loopback", "host"] = _f(
        "bridge", "Network of task containers (oci runtime): bridge (own namespace on the worker's CNI bridge, "
        "an address from network_pool, masqueraded egress), loopback (own namespace, no route out) or host "
        "(the worker's own network).", WORKER,
    )
    network_pool: str = _f(
        "10.80.0.0/16", "IPv4 range (CIDR) the bridge network gives container addresses from; its first address "
        "is the gateway.", WORKER,
    )
    dns_servers: Annotated[list[str], NoDecode] = _f(
        [], "DNS servers of bridge-networked containers (comma separated); empty means the worker's own, without "
        "loopback ones (only loopback ones: the worker forwards DNS on the bridge gateway).", WORKER,
    )
    restricted_networks: Annotated[list[str], NoDecode] = _f(
        ["169.254.169.254/32"], "CIDRs bridge-networked containers may not connect to (comma separated); the "
        "default denies the cloud metadata address.", WORKER,
    )

    # --- baggageclaim (volume server) ---------------------------------------------------------
    baggageclaim_bind_host: str = _f("127.0.0.1", "Address the volume server listens on.", WORKER, BAGGAGECLAIM)
    baggageclaim_bind_port: int = _f(7788, "Port the volume server listens on.", WORKER, BAGGAGECLAIM, ge=0, le=65535)
    baggageclaim_url: str = _f(
        "", "Volume server URL: advertised to web, used by `airside volumes`; empty derives it from bind host/port.",
        WORKER, CLIENT,
    )
    baggageclaim_token: SecretStr | None = _f(
        None, "Bearer token of the volume server API (web uses it for the kubernetes runtime's artifact store); "
        "empty means a generated one in data_dir/baggageclaim-token.",
        WEB, WORKER, BAGGAGECLAIM, CLIENT, secret=True,
    )
    baggageclaim_stream_max_bytes: int = _f(
        64 << 30, "Largest stream-in/import body (tar, as sent) the volume server accepts, in bytes.",
        WORKER, BAGGAGECLAIM, gt=0,
    )
    baggageclaim_sweep_interval: float = _f(
        30.0, "Seconds between volume server sweeps of expired (TTL) volumes.", WORKER, BAGGAGECLAIM, gt=0
    )
    baggageclaim_btrfs_image_mib: int = _f(
        20480, "Size (MiB, sparse) of the loop-mounted btrfs image the btrfs driver creates when the volume dir "
        "is not btrfs.", WORKER, BAGGAGECLAIM, gt=100,
    )
    baggageclaim_driver: Literal["detect", "naive", "overlay", "btrfs"] = _f(
        "detect", "Volume driver; detect probes the volume dir: btrfs, then overlay, then naive.", WORKER, BAGGAGECLAIM
    )
    volumes_dir: Path | None = _f(None, "Volume directory; empty means work_dir/volumes.", WORKER, BAGGAGECLAIM)

    # --- kubernetes runtime (web runs tasks as Jobs; airside.runtime.kubernetes) ---------------------
    runtime: Literal["workers", "kubernetes"] = _f(
        "workers", "Where web runs tasks: on registered airside workers, or as Kubernetes Jobs (no worker needed).",
        WEB,
    )
    kubernetes_tag: str = _f(
        "kubernetes", "A build with this tag runs as a Kubernetes Job even when runtime is workers.", WEB
    )
    kubernetes_artifact_web_url: str = _f(
        "", "URL of the artifact store as web reaches it; empty means kubernetes_artifact_url.", WEB
    )
    kubernetes_namespace: str = _f("default", "Namespace the kubernetes runtime creates task Jobs in.", WEB)
    kubernetes_service_account: str = _f(
        "", "Service account task pods run as; empty means the namespace's default.", WEB
    )
    kubernetes_node_selector: Annotated[dict[str, str], NoDecode] = _f(
        {}, "Node selector of task pods: JSON object, or key=value pairs separated by commas.", WEB
    )
    kubernetes_tolerations: Annotated[list[dict[str, Any]], NoDecode] = _f(
        [], "Tolerations of task pods: a JSON list of Kubernetes toleration objects.", WEB
    )
    kubernetes_image_pull_secrets: Annotated[list[str], NoDecode] = _f(
        [], "Names of image pull Secrets for task pods (comma separated, or a JSON list).", WEB
    )
    kubernetes_tag_placement: Annotated[dict[str, dict[str, Any]], NoDecode] = _f(
        {}, "Placement of task pods by build tag: a JSON object tag -> {nodeSelector, tolerations, affinity} "
        "(Kubernetes' own shapes), added to kubernetes_node_selector/kubernetes_tolerations. A build tagged with "
        "a tag missing here errors naming it.", WEB,
    )
    kubernetes_priority_class_name: str = _f("", "priorityClassName of task pods; empty means none.", WEB)
    kubernetes_runtime_class_name: str = _f("", "runtimeClassName of task pods (e.g. gvisor); empty means none.", WEB)
    kubernetes_default_cpu_shares: int = _f(
        0, "CPU shares of a task without container_limits.cpu (requests shares/1024 cores); 0 means no request.",
        WEB, ge=0,
    )
    kubernetes_default_memory_mib: int = _f(
        0, "Memory (MiB, request = limit) of a task without container_limits.memory; 0 means none.", WEB, ge=0
    )
    kubernetes_cpu_limit_ratio: float = _f(
        0.0, "CPU limit of a task pod as a multiple of its CPU request (shares/1024 cores); 0 means no CPU limit "
        "(Kubernetes throttles at a limit; shares never cap a container on a worker).", WEB, ge=0,
    )
    kubernetes_task_timeout: float = _f(
        3600.0, "Seconds a task Job may run (activeDeadlineSeconds, scheduling included); 0 means no limit.", WEB, ge=0
    )
    kubernetes_schedule_timeout: float = _f(
        300.0, "Seconds a task pod may stay unscheduled, or scheduled without starting, before it errors (and how "
        "long web waits for the artifact store to answer before it errors a build).", WEB, gt=0
    )
    kubernetes_ttl_after_finished: int = _f(
        600, "Seconds Kubernetes keeps a finished task Job nobody deleted (ttlSecondsAfterFinished).", WEB, ge=0
    )
    kubernetes_airside_image: str = _f(
        "airside:0.1.0", "Image of the fetch-inputs / upload-outputs steps of task pods (the airside image).", WEB
    )
    kubernetes_artifact_url: str = _f(
        "", "URL of the artifact store (`airside baggageclaim`) as task pods reach it, e.g. "
        "http://airside-baggageclaim:7788.", WEB,
    )
    kubernetes_kubeconfig: str = _f(
        "", "Kubeconfig file of the kubernetes runtime; empty means in-cluster config (or the default kubeconfig "
        "outside a cluster).", WEB,
    )

    @model_validator(mode="before")
    @classmethod
    def _structured_from_text(cls, data: Any) -> Any:
        """Env vars and flags give lists and maps as text (see `env_text`): JSON, or the short forms
        `a,b` (a list of words) and `k=v,k2=v2` (a map of words)."""
        if not isinstance(data, dict):
            return data
        for name, value in list(data.items()):
            if not isinstance(value, str) or name not in cls.model_fields or env_encoding(name) == "scalar":
                continue
            text = value.strip()
            if text[:1] in ("{", "["):
                try:
                    data[name] = json.loads(text)
                except ValueError as e:
                    raise ValueError(f"{name}: invalid JSON ({e})") from None
            elif str(cls.model_fields[name].annotation).startswith("dict"):
                pairs = [kv.split("=", 1) for kv in text.split(",") if kv.strip()]
                data[name] = {kv[0].strip(): (kv[1].strip() if len(kv) > 1 else "") for kv in pairs}
            elif cls.model_fields[name].annotation == list[str]:
                data[name] = [t.strip() for t in text.split(",") if t.strip()]
            # anything else stays text, and validation names the field
        return data

    @field_validator("network_pool")
    @classmethod
    def _pool(cls, v: str) -> str:
        try:
            net = ipaddress.ip_network(v.strip(), strict=True)
        except ValueError as e:
            raise ValueError(f"not an IPv4 network in CIDR form ({e})") from None
        if net.version != 4 or net.prefixlen > 30:
            raise ValueError(f"{v!r}: an IPv4 network of at least 4 addresses (prefix /30 or shorter) is needed")
        return str(net)

    @field_validator("restricted_networks")
    @classmethod
    def _cidrs(cls, v: list[str]) -> list[str]:
        out = []
        for c in v:
            try:
                net = ipaddress.ip_network(c.strip(), strict=False)
            except ValueError as e:
                raise ValueError(f"{c!r} is not a network in CIDR form ({e})") from None
            if net.version != 4:
                raise ValueError(f"{c!r}: only IPv4 networks can be restricted (containers have IPv4 only)")
            out.append(str(net))
        return out

    @field_validator("dns_servers")
    @classmethod
    def _dns(cls, v: list[str]) -> list[str]:
        for a in v:
            try:
                ip = ipaddress.ip_address(a.strip())
            except ValueError:
                raise ValueError(f"{a!r} is not an IP address") from None
            if ip.is_loopback:
                raise ValueError(f"{a}: a loopback address is the container's own, not the worker's")
        return [a.strip() for a in v]

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            missing = "tls_key_file" if self.tls_key_file is None else "tls_cert_file"
            raise ValueError(f"{missing}: web's TLS needs both tls_cert_file and tls_key_file ({env_name(missing)})")
        return self

    @model_validator(mode="after")
    def _placement_shapes(self) -> Settings:
        shapes = {"nodeSelector": dict, "tolerations": list, "affinity": dict}
        for tag, placement in self.kubernetes_tag_placement.items():
            for key, value in placement.items():
                if key not in shapes:
                    raise ValueError(f"kubernetes_tag_placement: tag {tag!r}: unknown key {key!r} (expected "
                                     f"{', '.join(shapes)})")
                if not isinstance(value, shapes[key]):
                    raise ValueError(f"kubernetes_tag_placement: tag {tag!r}: {key} must be a JSON "
                                     f"{'object' if shapes[key] is dict else 'list'}")
        return self

    # --- derived values (never settings of their own) ----------------------------------------
    @property
    def resolved_database_url(self) -> str:
        url = self.database_url or f"sqlite:///{self.data_dir / 'airside.db'}"
        for prefix in ("postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix) :]
        return url

    @property
    def resolved_work_dir(self) -> Path:
        return self.work_dir or self.data_dir / "worker"

    @property
    def worker_state_file(self) -> Path:
        """Where a registered worker keeps its state as web last answered it (see `Beacon.state`)."""
        return self.resolved_work_dir / WORKER_STATE_FILE

    @property
    def resolved_volumes_dir(self) -> Path:
        return self.volumes_dir or self.resolved_work_dir / "volumes"

    @property
    def resolved_resource_types_dir(self) -> Path | None:
        """Where the worker's resource types are: the setting, else the build script's default output
        when it exists (None: the worker offers none)."""
        if self.resource_types_dir is not None:
            return self.resource_types_dir
        return DEFAULT_RESOURCE_TYPES_DIR if DEFAULT_RESOURCE_TYPES_DIR.is_dir() else None

    @property
    def web_scheme(self) -> str:
        return "https" if self.tls_cert_file else "http"

    @property
    def resolved_baggageclaim_url(self) -> str:
        return self.baggageclaim_url or f"http://{self.baggageclaim_bind_host}:{self.baggageclaim_bind_port}"


@dataclass(frozen=True)
class FieldMeta:
    """What `_f` recorded on a setting (its json_schema_extra), read back typed."""

    roles: tuple[str, ...]
    secret: bool = False
    file: bool = False
    secret_file: bool = False


def field_meta(field: FieldInfo) -> FieldMeta:
    """The roles and flags of a setting; a field not declared through `_f` has no roles."""
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    roles = extra.get("roles")
    return FieldMeta(roles=tuple(r for r in roles if isinstance(r, str)) if isinstance(roles, list) else (),
                     secret=extra.get("secret") is True, file=extra.get("file") is True,
                     secret_file=extra.get("secret_file") is True)


def fields_for(role: str) -> dict[str, FieldInfo]:
    """The settings a role reads (plus the common ones), in declaration order."""
    out = {}
    for name, field in Settings.model_fields.items():
        roles = field_meta(field).roles
        if role in roles or COMMON in roles:
            out[name] = field
    return out


def env_name(field_name: str) -> str:
    return ENV_PREFIX + field_name.upper()


def env_encoding(field_name: str) -> str:
    """How a setting's value is written as an environment variable: "comma" (a list of words, like
    tags), "json" (maps and lists of objects), or "scalar". Every packaging and quickstart uses this rule;
    `Settings` reads both forms back (and JSON for any list)."""
    annotation = Settings.model_fields[field_name].annotation
    if annotation == list[str]:
        return "comma"
    return "json" if str(annotation).startswith(("list", "dict")) else "scalar"


def env_text(field_name: str, value: Any) -> str:
    """A setting's value as the string `AIRSIDE_<NAME>` must hold for Settings to read it back."""
    enc = env_encoding(field_name)
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if enc == "comma":
        return ",".join(str(v) for v in value or [])
    if enc == "json":
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return "" if value is None else str(value)


def secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None
