"""The chart: `helm lint` and `helm template` of each variant (Helm v4 from the helm-python-sdk wheel, no
binary), every rendered manifest validated against the Kubernetes OpenAPI schema (kubernetes-validate)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from airside.config import Settings, env_name
from airside.packaging import model

helm = pytest.importorskip("helm_python", reason="pip install helm-python-sdk (ships Helm v4 as a library)")
kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")

KUBE_VERSION = "1.34.0"  # what tools/kind builds (cgroup v1 capable)

VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "overlay-driver": {"airside": {"worker": {"baggageclaim_driver": "overlay"}}},
    "external-postgresql": {"postgresql": {"enabled": False},
                            "externalDatabase": {"url": "postgresql://ci:pw@db.example.com:5432/ci"},
                            "web": {"replicas": 2, "pdb": {"enabled": True}}},
    "kubernetes-runtime": {"kubernetesRuntime": {"enabled": True}, "worker": {"enabled": False}},
    "sqlite-on-a-claim": {"postgresql": {"enabled": False}, "web": {"persistence": {"enabled": True}}},
    "ingress": {"web": {"ingress": {"enabled": True, "className": "nginx", "host": "ci.example.com",
                                    "tlsSecret": "ci-tls"}}},
    "web-tls": {"web": {"tls": {"secretName": "ci-web-tls"}}, "worker": {"persistence": {"enabled": True}}},
    "persistent-workers-land": {"worker": {"persistence": {"enabled": True, "storageClass": "fast"},
                                           "shutdownSignal": "SIGUSR1", "privileged": False},
                                "airside": {"worker": {"drain_timeout": 900, "tags": ["a", "b"],
                                                       "baggageclaim_stream_max_bytes": 1 << 40}}},
}


def template(chart: Path, values: dict[str, Any]) -> list[dict[str, Any]]:
    rendered = helm.Chart.load(str(chart)).render(values, name="ci", namespace="airside", is_install=True)
    docs = []
    for name, text in sorted(rendered.items()):
        if name.endswith("NOTES.txt"):
            continue
        docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_lint_is_clean(chart: Path, variant: str) -> None:
    report = helm.lint(str(chart), VARIANTS[variant], strict=True, namespace="airside")
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert not problems, problems


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_manifests_are_valid_kubernetes(chart: Path, variant: str) -> None:
    docs = template(chart, VARIANTS[variant])
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


def test_defaults(chart: Path) -> None:
    docs = template(chart, {})
    sts = by_kind(docs, "StatefulSet")
    worker = sts["ci-airside-worker"]["spec"]
    pod = worker["template"]["spec"]
    c = pod["containers"][0]
    env = env_of(c)
    assert env_name("baggageclaim_driver") not in env, "driver must be unset: the binary's detect applies"
    assert env[env_name("worker_name")] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env[env_name("web_url")] == "http://ci-airside-web:8080"
    assert env[env_name("worker_token")]["secretKeyRef"]["key"] == "worker_token"
    assert pod["terminationGracePeriodSeconds"] == int(model.drain_timeout_default()) + model.DRAIN_MARGIN_SECONDS
    assert "kill -s USR2 1" in c["lifecycle"]["preStop"]["exec"]["command"][-1]
    # ready while web has it running: the probe reads the state file the worker keeps in its work dir
    probe = c["readinessProbe"]["exec"]["command"]
    assert probe[-1] == str(Settings(data_dir=model.DATA_DIR, work_dir=env[env_name("work_dir")]).worker_state_file)
    assert probe[:-1] == ["grep", "-qx", "running"]
    assert by_kind(docs, "Service")["ci-airside-worker"]["spec"]["publishNotReadyAddresses"] is True
    assert c["securityContext"]["privileged"] is True
    assert pod["volumes"] == [{"name": "work", "emptyDir": {}}]
    assert worker["podManagementPolicy"] == "Parallel"
    assert "ci-airside-postgresql" in sts
    assert "ci-airside-artifacts" not in sts
    assert not by_kind(docs, "Role")
    assert by_kind(docs, "PodDisruptionBudget")["ci-airside-worker"]["spec"]["maxUnavailable"] == 1
    web = by_kind(docs, "Deployment")["ci-airside-web"]["spec"]["template"]["spec"]
    wenv = env_of(web["containers"][0])
    assert wenv[env_name("database_url")] == {"secretKeyRef": {"name": "ci-airside", "key": "database_url"}}
    assert web["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert web["securityContext"]["runAsNonRoot"] is True
    secret = by_kind(docs, "Secret")["ci-airside"]
    assert {s.name for s in model.secret_settings()} | {"postgres_password", "database_url"} == set(secret["data"])
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    tests = [d for d in docs if d["kind"] == "Pod"]
    assert tests and tests[0]["metadata"]["annotations"]["helm.sh/hook"] == "test"


def test_web_tls(chart: Path) -> None:
    docs = template(chart, VARIANTS["web-tls"])
    web = by_kind(docs, "Deployment")["ci-airside-web"]["spec"]["template"]["spec"]
    c = web["containers"][0]
    env = env_of(c)
    assert env[env_name("tls_cert_file")] == f"{model.TLS_DIR}/tls.crt"
    assert env[env_name("tls_key_file")] == f"{model.TLS_DIR}/tls.key"
    assert {"name": "tls", "mountPath": model.TLS_DIR, "readOnly": True} in c["volumeMounts"]
    tls_volume = next(v for v in web["volumes"] if v["name"] == "tls")
    assert tls_volume["secret"]["secretName"] == "ci-web-tls"
    assert c["readinessProbe"]["httpGet"]["scheme"] == "HTTPS" and c["livenessProbe"]["httpGet"]["scheme"] == "HTTPS"
    # workers and the test pod call https and trust only the Secret's CA (never see its key)
    worker = by_kind(docs, "StatefulSet")["ci-airside-worker"]["spec"]["template"]["spec"]
    tester = next(d for d in docs if d["kind"] == "Pod")["spec"]
    for pod in (worker, tester):
        penv = env_of(pod["containers"][0])
        assert penv[env_name("web_url")] == "https://ci-airside-web:8080"
        assert penv[env_name("tls_ca_file")] == f"{model.WEB_CA_DIR}/ca.crt"
        ca = next(v for v in pod["volumes"] if v["name"] == "web-ca")
        assert ca["secret"] == {"secretName": "ci-web-tls", "items": [{"key": "ca.crt", "path": "ca.crt"}]}
    # plain HTTP by default, and a publicly trusted certificate needs no CA
    plain = by_kind(template(chart, {}), "Deployment")["ci-airside-web"]["spec"]["template"]["spec"]["containers"][0]
    assert env_name("tls_cert_file") not in env_of(plain) and plain["readinessProbe"]["httpGet"]["scheme"] == "HTTP"
    public = by_kind(template(chart, {"web": {"tls": {"secretName": "pub", "caKey": ""}}}), "StatefulSet")
    wpod = public["ci-airside-worker"]["spec"]["template"]["spec"]
    assert env_name("tls_ca_file") not in env_of(wpod["containers"][0])
    assert env_of(wpod["containers"][0])[env_name("web_url")] == "https://ci-airside-web:8080"
    assert all(v["name"] != "web-ca" for v in wpod["volumes"])


def test_overlay_driver(chart: Path) -> None:
    c = by_kind(template(chart, VARIANTS["overlay-driver"]), "StatefulSet")["ci-airside-worker"]
    assert env_of(c["spec"]["template"]["spec"]["containers"][0])[env_name("baggageclaim_driver")] == "overlay"


def test_external_postgresql(chart: Path) -> None:
    docs = template(chart, VARIANTS["external-postgresql"])
    assert "ci-airside-postgresql" not in by_kind(docs, "StatefulSet")
    secret = by_kind(docs, "Secret")["ci-airside"]
    assert "database_url" in secret["data"] and "postgres_password" not in secret["data"]
    assert by_kind(docs, "Deployment")["ci-airside-web"]["spec"]["replicas"] == 2


def test_more_web_replicas_need_postgresql(chart: Path) -> None:
    with pytest.raises(helm.HelmError, match="needs PostgreSQL"):
        template(chart, {"postgresql": {"enabled": False}, "web": {"replicas": 2}})


def test_kubernetes_runtime(chart: Path) -> None:
    docs = template(chart, VARIANTS["kubernetes-runtime"])
    role = by_kind(docs, "Role")["ci-airside-web-jobs"]
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): set(r["verbs"]) for r in role["rules"]}
    assert rules[(("batch",), ("jobs",))] == {"create", "get", "list", "watch", "delete"}
    assert rules[(("",), ("pods",))] == {"get", "list", "watch", "delete"}
    assert rules[(("",), ("pods/log",))] == {"get"}
    assert rules[(("",), ("secrets",))] == {"create", "patch", "delete"}
    assert rules[(("",), ("events",))] == {"list"}
    binding = by_kind(docs, "RoleBinding")["ci-airside-web-jobs"]
    assert binding["subjects"][0]["name"] == "ci-airside-web"
    sts = by_kind(docs, "StatefulSet")
    assert "ci-airside-worker" not in sts
    store = sts["ci-airside-artifacts"]
    assert store["spec"]["template"]["spec"]["containers"][0]["args"] == ["baggageclaim"]
    assert store["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "volumes"
    web = by_kind(docs, "Deployment")["ci-airside-web"]["spec"]["template"]["spec"]
    assert web["serviceAccountName"] == "ci-airside-web" and web["automountServiceAccountToken"] is True
    env = env_of(web["containers"][0])
    assert env[env_name("runtime")] == "kubernetes"
    assert env[env_name("kubernetes_artifact_url")] == "http://ci-airside-artifacts:7788"
    assert env[env_name("kubernetes_namespace")] == "airside"
    assert env[env_name("kubernetes_airside_image")].startswith("airside:")
    assert env[env_name("baggageclaim_token")]["secretKeyRef"]["key"] == "baggageclaim_token"  # shared with the store


def test_ingress(chart: Path) -> None:
    ing = by_kind(template(chart, VARIANTS["ingress"]), "Ingress")["ci-airside-web"]
    assert ing["spec"]["rules"][0]["host"] == "ci.example.com"
    assert ing["spec"]["tls"][0]["secretName"] == "ci-tls"


def test_persistent_landing_workers(chart: Path) -> None:
    sts = by_kind(template(chart, VARIANTS["persistent-workers-land"]), "StatefulSet")["ci-airside-worker"]
    pod = sts["spec"]["template"]["spec"]
    c = pod["containers"][0]
    env = env_of(c)
    assert pod["terminationGracePeriodSeconds"] == 900 + model.DRAIN_MARGIN_SECONDS
    assert "kill -s USR1 1" in c["lifecycle"]["preStop"]["exec"]["command"][-1]
    assert env[env_name("tags")] == "a,b"
    assert env[env_name("drain_timeout")] == "900"
    assert env[env_name("baggageclaim_stream_max_bytes")] == str(1 << 40)
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"] == "fast"
    assert "volumes" not in pod
    assert c["securityContext"]["privileged"] is False


def test_values_schema_rejects_unknown_keys(chart: Path) -> None:
    with pytest.raises(helm.HelmError, match="replicaz"):
        helm.Chart.load(str(chart)).validate_schema({"worker": {"replicaz": 1}})
    with pytest.raises(helm.HelmError, match="baggageclaim_driver"):
        helm.Chart.load(str(chart)).validate_schema({"airside": {"worker": {"baggageclaim_driver": "zfs"}}})


def test_structured_settings_reach_the_binary_as_it_reads_them(chart: Path) -> None:
    """Lists and maps (tags, node selectors, tolerations) are written the way Settings parses them back."""
    from airside.config import Settings

    given = {"kubernetes_node_selector": {"disk": "ssd", "zone": "a"},
             "kubernetes_tolerations": [{"key": "ci", "operator": "Exists", "effect": "NoSchedule"}],
             "kubernetes_image_pull_secrets": ["regcred", "other"],
             "kubernetes_tag_placement": {"gpu": {"nodeSelector": {"gpu": "true"}, "tolerations": [
                 {"key": "nvidia.com/gpu", "operator": "Exists"}]}},
             "kubernetes_priority_class_name": "ci-low", "kubernetes_runtime_class_name": "gvisor",
             "kubernetes_default_cpu_shares": 256, "kubernetes_cpu_limit_ratio": 1.5,
             "allow_privileged_tasks": True}
    docs = template(chart, {"kubernetesRuntime": {"enabled": True}, "airside": {"web": given,
                                                                              "worker": {"tags": ["x", "y"]}}})
    web = next(d for d in by_kind(docs, "Deployment").values() if d["metadata"]["name"].endswith("web"))
    env = {k: v for k, v in env_of(web["spec"]["template"]["spec"]["containers"][0]).items()
           if isinstance(v, str) and k in {env_name(n) for n in given}}
    parsed = Settings(**{k.removeprefix("AIRSIDE_").lower(): v for k, v in env.items()})
    for name, value in given.items():
        assert getattr(parsed, name) == value
    worker = next(d for name, d in by_kind(docs, "StatefulSet").items() if name.endswith("worker"))
    wenv = env_of(worker["spec"]["template"]["spec"]["containers"][0])
    assert Settings(tags=wenv[env_name("tags")]).tags == ["x", "y"]


def test_sqlite_on_a_claim(chart: Path) -> None:
    docs = template(chart, VARIANTS["sqlite-on-a-claim"])
    web = by_kind(docs, "Deployment")["ci-airside-web"]
    assert web["spec"]["strategy"]["type"] == "Recreate"
    volumes = {v["name"]: v for v in web["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == "ci-airside-web-data"
    assert "ci-airside-web-data" in by_kind(docs, "PersistentVolumeClaim")
    assert env_name("database_url") not in env_of(web["spec"]["template"]["spec"]["containers"][0])  # SQLite
    with pytest.raises(Exception, match="one data dir for one pod"):
        template(chart, {**VARIANTS["external-postgresql"], "web": {"persistence": {"enabled": True}, "replicas": 2}})
