"""The deployment model: what airside's components are, independent of how they are deployed.

One model, three renderings (Helm chart, docker-compose, BOSH jobs). Everything a template needs that
is not pure target syntax lives here: components and their commands, ports, probes, volumes, drain
behaviour, resource defaults, and — derived from the one settings model (`airside.config.Settings`),
never listed by hand — the settings each component reads, with their env names, descriptions,
JSON schemas and portable defaults.

The *values* (`default_values()`) are one nested document shared by every target: Helm writes it as
values.yaml, compose and BOSH read the same keys when an operator renders with overrides. Under
`airside.<component>` the keys are settings field names (env `AIRSIDE_<NAME>`); `null` means "not set:
the binary's default applies" (a chart default that mirrors a binary default is how Concourse's
chart got stuck on the slow `naive` driver).
"""

from __future__ import annotations

import functools
import signal
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from airside.config import (
    BAGGAGECLAIM,
    COMMON,
    WEB,
    WORKER,
    WORKER_STATE_FILE,
    Settings,
    env_encoding,
    env_name,
    field_meta,
)

# Signal names the worker understands (airside.worker.signals is the truth; a unit test cross-checks).
# Packaging sits in the same layer as the worker and does not import it.
LAND_SIGNAL = signal.SIGUSR1.name
RETIRE_SIGNAL = signal.SIGUSR2.name
SHUTDOWN_SIGNALS = (RETIRE_SIGNAL, LAND_SIGNAL)
DEFAULT_SHUTDOWN_SIGNAL = RETIRE_SIGNAL

# Seconds added on top of the worker's drain timeout before the platform kills it: time to notice
# the drain timeout, fail the remaining work with a reason and deregister.
DRAIN_MARGIN_SECONDS = 30

DATA_DIR = "/var/lib/airside"  # in the image, the chart and compose
BOSH_DATA_DIR = "/var/vcap/store/airside"
SAMPLE_ROOTFS = "/opt/airside/rootfs/busybox"  # a tiny task image baked into the airside image  # the persistent disk of a BOSH instance
IMAGE_REPOSITORY = "airside"
PYTHON_VERSION = "3.11"  # the CPython the image (bookworm's python3) and the BOSH python3 package carry
POSTGRES_IMAGE = ("postgres", "15-bookworm")  # Debian bookworm's PostgreSQL; tools/image/build-postgres.sh


# --- settings, derived from airside.config -------------------------------------------------------------
@dataclass(frozen=True)
class SettingSpec:
    name: str
    env: str
    description: str
    roles: tuple[str, ...]
    secret: bool
    schema: dict[str, Any]  # JSON schema of a set value (never includes null)
    default: Any  # the binary's default when it is the same on every machine, else None
    machine_default: bool  # the binary's default depends on the machine (home dir, hostname)
    file: bool = False  # a path to a file the operator provides (certificates, keys)
    secret_file: bool = False  # ... holding a secret (a private key)

    @property
    def content_name(self) -> str:
        """Name of the property carrying a file setting's *content* (BOSH): tls_cert_file → tls_cert."""
        return self.name.removesuffix("_file") if self.file else self.name

    @property
    def type(self) -> str:
        return self.schema.get("type", "string")

    @property
    def encoding(self) -> str:
        """How the value is written into AIRSIDE_<NAME> (comma | json | scalar): airside.config.env_encoding."""
        return env_encoding(self.name)

    @property
    def default_text(self) -> str:
        """The binary's default as an operator reads it in docs."""
        if self.machine_default:
            return "machine dependent (see `airside --help`)"
        if self.default is None or self.default == "" or self.default == []:
            return "unset"
        if isinstance(self.default, bool):
            return "true" if self.default else "false"
        if isinstance(self.default, list):
            return ",".join(self.default)
        return str(self.default)


def _value_schema(prop: dict[str, Any]) -> dict[str, Any]:
    if "anyOf" in prop:
        options = [o for o in prop["anyOf"] if o.get("type") != "null"]
        prop = options[0] if len(options) == 1 else {"anyOf": options}
    keep = ("type", "enum", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "items", "anyOf")
    out = {k: v for k, v in prop.items() if k in keep}
    if "items" in out:
        out["items"] = _value_schema(out["items"])
    return out


def _portable_default(value: Any) -> tuple[Any, bool]:
    """(default, machine_dependent). Paths and the host name differ per machine: never render them."""
    if isinstance(value, SecretStr):
        return None, False
    if isinstance(value, Path):
        return None, True
    if isinstance(value, str) and value and value == socket.gethostname():
        return None, True
    if isinstance(value, float) and value.is_integer():
        return value, False
    return value, False


def settings() -> list[SettingSpec]:
    """Every setting, in declaration order (the order of Settings.model_fields)."""
    return list(_settings())


@functools.cache
def _settings() -> tuple[SettingSpec, ...]:
    props = Settings.model_json_schema()["properties"]
    out = []
    for name, f in Settings.model_fields.items():
        meta = field_meta(f)
        default, machine = _portable_default(f.default)
        out.append(SettingSpec(
            name=name, env=env_name(name), description=(f.description or "").strip(),
            roles=meta.roles, secret=meta.secret,
            schema=_value_schema(props.get(name, {})), default=default, machine_default=machine,
            file=meta.file, secret_file=meta.secret_file,
        ))
    return tuple(out)


def settings_for(role: str) -> list[SettingSpec]:
    """The settings a role reads (its own and the common ones), like `airside.config.fields_for`."""
    return [s for s in settings() if role in s.roles or COMMON in s.roles]


def secret_settings() -> list[SettingSpec]:
    return [s for s in settings() if s.secret]


# --- how a deployment fills settings the operator should not have to ----------------------------------
CHART_ONLY_KINDS = frozenset({"kubernetes_runtime", "artifact_url", "job_namespace", "airside_image", "web_tls",
                              "web_tls_ca"})
TLS_DIR = "/etc/airside/tls"  # chart: web's certificate Secret (web.tls.secretName)
WEB_CA_DIR = "/etc/airside/web-ca"  # chart: the CA that verifies web (web.tls.caKey of that Secret)


@dataclass(frozen=True)
class Managed:
    """A setting the deployment sets unless the operator sets it.

    kind: `literal` (arg is the value), `web_url` (web's in-cluster URL), `instance_name` (pod / container
    / BOSH instance name), `self_baggageclaim_url` (this instance's volume server URL), `database_url`
    (the bundled or external database), `path` (arg is a path under the data dir); chart only:
    `kubernetes_runtime` ("kubernetes" when kubernetesRuntime.enabled), `artifact_url` (the artifact
    store's service URL), `job_namespace`, `airside_image` (the chart's own image), `web_tls` (arg is the key
    of web.tls.secretName mounted at TLS_DIR), `web_tls_ca` (that Secret's CA, mounted at WEB_CA_DIR)."""

    kind: str
    arg: str = ""

    def describe(self) -> str:
        """What the chart/compose/BOSH set when the operator does not, for docs."""
        return {
            "literal": repr(self.arg), "path": repr(f"{DATA_DIR}/{self.arg}"),
            "web_url": "web's in-cluster URL", "instance_name": "the pod / instance name",
            "self_baggageclaim_url": "http://<pod IP>:<baggageclaim port>",
            "database_url": "the URL of the bundled or external PostgreSQL (from the Secret)",
            "kubernetes_runtime": "chart: kubernetes when kubernetesRuntime.enabled",
            "artifact_url": "chart: the artifact store's service URL",
            "job_namespace": "chart: kubernetesRuntime.jobNamespace or the release namespace",
            "airside_image": "chart: the chart's airside image",
            "web_tls": f"chart: {TLS_DIR}/{self.arg} when web.tls.secretName is set",
            "web_tls_ca": f"chart: {WEB_CA_DIR}/ca.crt when web.tls.secretName and web.tls.caKey are set",
        }[self.kind]


@dataclass(frozen=True)
class Port:
    name: str
    setting: str  # the settings field holding the port number

    @property
    def number(self) -> int:
        return int(Settings.model_fields[self.setting].default)


@dataclass(frozen=True)
class Probe:
    kind: str  # http | tcp | exec
    path: str = ""
    port: str = ""  # a Port name
    command: tuple[str, ...] = ()
    initial_delay: int = 5
    period: int = 10
    failure_threshold: int = 6


@dataclass(frozen=True)
class Volume:
    name: str
    mount: str
    persistent_default: bool  # PVC by default (else emptyDir), the value can switch it
    size: str


@dataclass
class Component:
    name: str
    role: str | None  # the settings role it reads (None: not airside, e.g. postgres)
    command: tuple[str, ...]
    description: str
    ports: tuple[Port, ...] = ()
    liveness: Probe | None = None
    readiness: Probe | None = None
    volumes: tuple[Volume, ...] = ()
    managed: dict[str, Managed] = field(default_factory=dict)
    privileged: bool = False  # needs privileges (mounts, runc) with the default driver/runtime
    run_as_root: bool = False
    drains: bool = False  # lifecycle driven by the worker signals
    replicas: int = 1
    resources: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def settings(self) -> list[SettingSpec]:
        return settings_for(self.role) if self.role else []

    @property
    def plain_settings(self) -> list[SettingSpec]:
        """Settings that go to values/env as plain values (secrets come from the secret store)."""
        return [s for s in self.settings if not s.secret]

    @property
    def secret_settings(self) -> list[SettingSpec]:
        return [s for s in self.settings if s.secret]

    @property
    def managed_settings(self) -> dict[str, Managed]:
        """Managed entries for settings that exist (others may be added later by other subsystems)."""
        return {k: v for k, v in self.managed.items() if k in Settings.model_fields}


def _resources(cpu: str, memory: str, cpu_limit: str | None = None, memory_limit: str | None = None) -> dict:
    out: dict[str, dict[str, str]] = {"requests": {"cpu": cpu, "memory": memory}}
    limits = {k: v for k, v in (("cpu", cpu_limit), ("memory", memory_limit)) if v}
    if limits:
        out["limits"] = limits
    return out


def components() -> dict[str, Component]:
    web_port = Port("http", "bind_port")
    bc_port = Port("baggageclaim", "baggageclaim_bind_port")
    return {
        "web": Component(
            name="web", role=WEB, command=("web",),
            description="API, scheduler and registry; one replica unless the database is PostgreSQL.",
            ports=(web_port,),
            liveness=Probe("http", "/healthz", "http", initial_delay=10, period=15),
            readiness=Probe("http", "/readyz", "http", initial_delay=3, period=5, failure_threshold=3),
            volumes=(Volume("data", DATA_DIR, False, "1Gi"),),
            managed={
                "bind_host": Managed("literal", "0.0.0.0"),
                "data_dir": Managed("literal", DATA_DIR),
                "database_url": Managed("database_url"),
                # the kubernetes runtime (chart only: compose and BOSH have no cluster to run Jobs in)
                "runtime": Managed("kubernetes_runtime"),
                "kubernetes_artifact_url": Managed("artifact_url"),
                "kubernetes_namespace": Managed("job_namespace"),
                "kubernetes_airside_image": Managed("airside_image"),
                "tls_cert_file": Managed("web_tls", "tls.crt"),
                "tls_key_file": Managed("web_tls", "tls.key"),
            },
            resources=_resources("100m", "256Mi", memory_limit="1Gi"),
        ),
        "worker": Component(
            name="worker", role=WORKER, command=("worker",),
            description="Beacon, volume server, container runtime and reaper in one process.",
            ports=(bc_port,),
            # no liveness probe: the worker exits on what it cannot recover from, and the kubelet restarts it
            # ready while web says the worker is running (not before it registered, not while it drains)
            readiness=Probe("exec", command=("grep", "-qx", "running", f"{DATA_DIR}/worker/{WORKER_STATE_FILE}"),
                            initial_delay=2, period=5, failure_threshold=1),
            volumes=(Volume("work", f"{DATA_DIR}/worker", False, "20Gi"),),
            managed={
                "data_dir": Managed("literal", DATA_DIR),
                "work_dir": Managed("path", "worker"),
                "worker_name": Managed("instance_name"),
                "web_url": Managed("web_url"),
                "baggageclaim_bind_host": Managed("literal", "0.0.0.0"),
                "baggageclaim_url": Managed("self_baggageclaim_url"),
                "tls_ca_file": Managed("web_tls_ca"),
            },
            privileged=True, run_as_root=True, drains=True, replicas=2,
            resources=_resources("500m", "1Gi"),
        ),
        "baggageclaim": Component(
            name="baggageclaim", role=BAGGAGECLAIM, command=("baggageclaim",),
            description="The volume server alone: the artifact store of the Kubernetes runtime.",
            ports=(bc_port,),
            liveness=Probe("tcp", port="baggageclaim", initial_delay=5, period=15),
            readiness=Probe("tcp", port="baggageclaim", initial_delay=2, period=5, failure_threshold=3),
            volumes=(Volume("volumes", f"{DATA_DIR}/volumes", True, "10Gi"),),
            managed={
                "data_dir": Managed("literal", DATA_DIR),
                "baggageclaim_bind_host": Managed("literal", "0.0.0.0"),
                "volumes_dir": Managed("path", "volumes"),
            },
            resources=_resources("100m", "256Mi"),
        ),
        "postgres": Component(
            name="postgres", role=None, command=(), description="Bundled PostgreSQL (optional).",
            readiness=Probe("exec", command=("pg_isready", "-U", "airside", "-d", "airside"), period=5),
            volumes=(Volume("pgdata", "/var/lib/postgresql/data", True, "8Gi"),),
            resources=_resources("100m", "256Mi"),
        ),
    }


def drain_timeout_default() -> int:
    return int(Settings.model_fields["drain_timeout"].default)


# --- the values document ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Value:
    """One workload value (not a setting): its default, schema and the comment above it in values.yaml."""

    default: Any
    doc: str
    schema: dict[str, Any]


def _v(default: Any, doc: str, **schema: Any) -> Value:
    if not schema:
        schema = {"type": {bool: "boolean", int: "integer", str: "string", dict: "object",
                           list: "array"}[type(default)]}
    return Value(default, doc, schema)


_STR_OR_EMPTY = {"type": "string"}
_OBJ = {"type": "object"}


def _workload(c: Component, *, replicas_doc: str) -> dict[str, Any]:
    return {
        "replicas": _v(c.replicas, replicas_doc, type="integer", minimum=0),
        "resources": _v(c.resources, "Requests/limits of the container. "
                        "Ref: https://kubernetes.io/docs/concepts/configuration/manage-resources-containers/",
                        **_OBJ),
        "nodeSelector": _v({}, "Node labels the pods must match.", **_OBJ),
        "tolerations": _v([], "Tolerations of the pods.", type="array"),
        "affinity": _v({}, "Affinity rules of the pods.", **_OBJ),
        "podAnnotations": _v({}, "Extra annotations on the pods.", **_OBJ),
    }


def _persistence(v: Volume, what: str) -> dict[str, Any]:
    return {
        "enabled": _v(v.persistent_default, f"Keep {what} on a PersistentVolumeClaim; false uses an emptyDir."),
        "storageClass": _v("", "StorageClass of the claim; empty uses the cluster default.", **_STR_OR_EMPTY),
        "size": _v(v.size, "Size of the claim.", type="string"),
        "accessMode": _v("ReadWriteOnce", "Access mode of the claim.", type="string",
                         enum=["ReadWriteOnce", "ReadWriteOncePod", "ReadWriteMany"]),
    }


def workload_values() -> dict[str, Any]:
    """Workload values (Kubernetes/compose/BOSH shape), as a tree of `Value` leaves."""
    comps = components()
    web, worker, bc, pg = comps["web"], comps["worker"], comps["baggageclaim"], comps["postgres"]
    drain = drain_timeout_default()
    return {
        "nameOverride": _v("", "Replaces the chart name in resource names.", **_STR_OR_EMPTY),
        "fullnameOverride": _v("", "Replaces the release-chart prefix of resource names.", **_STR_OR_EMPTY),
        "image": {
            "repository": _v(IMAGE_REPOSITORY, "Image holding the `airside` binary (built by tools/image/build.sh).",
                             type="string"),
            "tag": _v("", "Image tag; empty uses the chart's appVersion.", **_STR_OR_EMPTY),
            "pullPolicy": _v("IfNotPresent", "When the kubelet pulls the image.", type="string",
                             enum=["Always", "IfNotPresent", "Never"]),
        },
        "imagePullSecrets": _v([], "Secrets for pulling the image from a private registry.", type="array"),
        "secrets": {
            "existingSecret": _v("", "Name of an existing Secret holding the keys below (settings field names); "
                                 "empty: the chart makes one, generating missing values once and keeping them on "
                                 "upgrade.", **_STR_OR_EMPTY),
            **{s.name: _v("", f"{s.description} Env {s.env}. Empty: generated once, kept on upgrade.",
                          **_STR_OR_EMPTY) for s in secret_settings()},
        },
        "web": {
            **_workload(web, replicas_doc="Web replicas. More than 1 needs PostgreSQL (bundled or external)."),
            "service": {
                "type": _v("ClusterIP", "Service type of web.", type="string",
                           enum=["ClusterIP", "NodePort", "LoadBalancer"]),
                "port": _v(web.ports[0].number, "Service port of web.", type="integer", minimum=1, maximum=65535),
            },
            "ingress": {
                "enabled": _v(False, "Expose web through an Ingress."),
                "className": _v("", "IngressClass name; empty uses the cluster default.", **_STR_OR_EMPTY),
                "host": _v("airside.example.com", "Host name web is served under.", type="string"),
                "tlsSecret": _v("", "Secret with the TLS certificate for the host; empty: plain HTTP.",
                                **_STR_OR_EMPTY),
                "annotations": _v({}, "Annotations of the Ingress (e.g. cert-manager issuer).", **_OBJ),
            },
            "tls": {
                "secretName": _v("", "Secret of type kubernetes.io/tls (tls.crt, tls.key) web serves HTTPS with, e.g. "
                                 "from cert-manager. Its names must include the web Service (<fullname>-web) that "
                                 "workers and `helm test` call; an Ingress in front needs its backend-protocol "
                                 "annotation set to HTTPS. Empty: plain HTTP.", **_STR_OR_EMPTY),
                "caKey": _v("ca.crt", "Key in that Secret of the CA certificate workers and `helm test` verify web "
                            "with (cert-manager writes ca.crt); empty: the system's CAs.", **_STR_OR_EMPTY),
            },
            "persistence": _persistence(web.volumes[0], "web's data dir (the SQLite database and build artifacts "
                                                        "when there is no PostgreSQL; one replica, Recreate rollouts)"),
            "pdb": {
                "enabled": _v(False, "PodDisruptionBudget for web (useful with replicas > 1)."),
                "maxUnavailable": _v(1, "Web pods a voluntary disruption may take down at once.",
                                     type="integer", minimum=0),
            },
        },
        "worker": {
            "enabled": _v(True, "Run workers (the `workers` runtime). The Kubernetes runtime needs none."),
            **_workload(worker, replicas_doc="Worker replicas. Scale with `kubectl scale statefulset`; each pod "
                        "retires on scale-down."),
            "shutdownSignal": _v(DEFAULT_SHUTDOWN_SIGNAL,
                                 "Signal the preStop hook sends PID 1 (the worker, via tini) when a pod stops: "
                                 f"{RETIRE_SIGNAL} retires (finishes work, leaves the registry: pods are not "
                                 f"coming back under the same name unless on a PVC), {LAND_SIGNAL} lands (finishes "
                                 "work, stays registered as landed, comes back under the same name).",
                                 type="string", enum=list(SHUTDOWN_SIGNALS)),
            "terminationGracePeriodSeconds": _v(None, "Seconds Kubernetes waits before killing a stopping worker; "
                                                f"null: the drain timeout (airside.worker.drain_timeout, binary "
                                                f"default {drain}) + {DRAIN_MARGIN_SECONDS}.",
                                                type=["integer", "null"], minimum=0),
            "privileged": _v(worker.privileged, "Run the worker privileged: needed for the overlay/btrfs drivers "
                             "and the runc runtime; the naive driver with the process runtime works without."),
            "persistence": _persistence(worker.volumes[0], "the work dir (volumes)"),
            "emptyDirSizeLimit": _v("", "Size limit of the work dir emptyDir (when persistence is off).",
                                    **_STR_OR_EMPTY),
            "pdb": {
                "enabled": _v(True, "PodDisruptionBudget for workers, so node drains retire them one at a time."),
                "maxUnavailable": _v(1, "Worker pods a voluntary disruption may take down at once.",
                                     type="integer", minimum=0),
            },
        },
        "artifactStore": {
            "enabled": _v(False, "Run `airside baggageclaim` as the artifact store (StatefulSet + PVC); also on "
                          "whenever kubernetesRuntime.enabled is true."),
            **_workload(bc, replicas_doc="Artifact store replicas (one volume server per pod and PVC)."),
            "persistence": _persistence(bc.volumes[0], "artifacts"),
        },
        "kubernetesRuntime": {
            "enabled": _v(False, "Run tasks as Kubernetes Jobs: adds the Role/RoleBinding web needs and the "
                          "artifact store. Also on when airside.web.runtime is `kubernetes`."),
            "jobNamespace": _v("", "Namespace the Jobs run in; empty: the release namespace.", **_STR_OR_EMPTY),
        },
        "postgresql": {
            "enabled": _v(True, "Run a bundled PostgreSQL (a single StatefulSet). false: set "
                          "externalDatabase.url, or web falls back to SQLite in its data dir."),
            "image": {
                "repository": _v(POSTGRES_IMAGE[0], "PostgreSQL image.", type="string"),
                "tag": _v(POSTGRES_IMAGE[1], "PostgreSQL image tag.", type="string"),
            },
            "database": _v("airside", "Database name.", type="string"),
            "username": _v("airside", "Database user.", type="string"),
            "password": _v("", "Database password; empty: generated once, kept on upgrade.", **_STR_OR_EMPTY),
            "persistence": _persistence(pg.volumes[0], "the database"),
            "resources": _v(pg.resources, "Requests/limits of PostgreSQL.", **_OBJ),
        },
        "externalDatabase": {
            "url": _v("", "postgresql://user:password@host:5432/db of an external PostgreSQL (stored in the "
                      "Secret); used when postgresql.enabled is false.", **_STR_OR_EMPTY),
            "existingSecret": _v("", "Existing Secret holding the URL instead (key: externalDatabase.secretKey).",
                                 **_STR_OR_EMPTY),
            "secretKey": _v("database_url", "Key of the URL in externalDatabase.existingSecret.", type="string"),
        },
        "serviceAccount": {
            "create": _v(True, "Create a ServiceAccount for web (the Kubernetes runtime acts as it)."),
            "name": _v("", "ServiceAccount name; empty: the web fullname.", **_STR_OR_EMPTY),
        },
        "rbac": {
            "create": _v(True, "Create the Role/RoleBinding web needs for the Kubernetes runtime (jobs, pods, "
                         "pods/log)."),
        },
        "podSecurityContext": _v({"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
                                  "seccompProfile": {"type": "RuntimeDefault"}},
                                 "Pod securityContext of web and the artifact store (workers run as root).", **_OBJ),
        "securityContext": _v({"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                               "capabilities": {"drop": ["ALL"]}},
                              "Container securityContext of web and the artifact store.", **_OBJ),
        "tests": {
            "enabled": _v(True, "Add the `helm test` pod (checks a worker is running and web answers)."),
        },
    }


def settings_values() -> dict[str, dict[str, SettingSpec]]:
    """`airside.<component>` → settings (non-secret) the component reads; every value defaults to null."""
    return {name: {s.name: s for s in c.plain_settings}
            for name, c in components().items() if c.role is not None}


def _leaf_schema(v: Value) -> dict[str, Any]:
    schema = dict(v.schema)
    schema["description"] = v.doc
    return schema


def _setting_schema(s: SettingSpec) -> dict[str, Any]:
    schema = dict(s.schema)
    t = schema.get("type")
    if isinstance(t, str):
        schema["type"] = [t, "null"]
        if "enum" in schema:
            schema["enum"] = [*schema["enum"], None]
    else:
        schema = {"anyOf": [schema, {"type": "null"}]}
    schema["description"] = f"{s.description} Env {s.env}; null: binary default ({s.default_text})."
    return schema


def values_schema() -> dict[str, Any]:
    def tree(node: dict[str, Any]) -> dict[str, Any]:
        props = {k: (_leaf_schema(v) if isinstance(v, Value) else tree(v)) for k, v in node.items()}
        return {"type": "object", "additionalProperties": False, "properties": props}

    root = tree(workload_values())
    root["$schema"] = "http://json-schema.org/draft-07/schema#"
    root["title"] = "airside deployment values"
    root["properties"]["airside"] = {
        "type": "object", "additionalProperties": False,
        "description": "Settings of each component (keys are settings field names; null: binary default).",
        "properties": {comp: {"type": "object", "additionalProperties": False,
                              "properties": {n: _setting_schema(s) for n, s in specs.items()}}
                       for comp, specs in settings_values().items()},
    }
    return root


def default_values() -> dict[str, Any]:
    def tree(node: dict[str, Any]) -> dict[str, Any]:
        return {k: (v.default if isinstance(v, Value) else tree(v)) for k, v in node.items()}

    values = tree(workload_values())
    values["airside"] = {comp: dict.fromkeys(specs) for comp, specs in settings_values().items()}
    return values


def effective_setting(values: dict[str, Any], component: str, name: str) -> Any:
    """The value a component's setting has after overrides: the operator's, else the binary's default."""
    v = values.get("airside", {}).get(component, {}).get(name)
    if v is None:
        v = Settings.model_fields[name].default
    return v


def termination_grace_seconds(values: dict[str, Any]) -> int:
    explicit = values["worker"].get("terminationGracePeriodSeconds")
    if explicit is not None:
        return int(explicit)
    return int(float(effective_setting(values, "worker", "drain_timeout"))) + DRAIN_MARGIN_SECONDS
