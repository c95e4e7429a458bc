"""On a release whose web serves HTTPS (web.tls.secretName, a cert-manager-shaped Secret): workers verify web
with the Secret's CA and register, `helm test` passes (its test pod runs a task over https), plain HTTP is
refused, and a web restart during a running build does not lose it: the build finishes, the registry and
logs survive, and `airside execute` reconnects."""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import GATE, SAMPLE_ROOTFS, Release, gate_sh, wait_for, web_get, write_task

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def rel(release_factory) -> Release:  # noqa: ANN001
    r = release_factory("ops", tls=True)
    r.wait_running_workers({r.worker_pod(0), r.worker_pod(1)})
    return r


def test_helm_test_runs_a_task(rel: Release) -> None:
    result = rel.helm.test(rel.name, timeout=300, logs=True)
    assert "helm test: a task ran and its output came back" in json.dumps(result)


def test_web_serves_https_only(rel: Release) -> None:
    # the certificate web presents on the NodePort is the Secret's (not one web made up, not a proxy's)
    host, port = rel.web_url.removeprefix("https://").split(":")
    served = ssl.get_server_certificate((host, int(port)), ca_certs=str(rel.ca_file), timeout=30)
    assert rel.cert_file and ssl.PEM_cert_to_DER_cert(served) == ssl.PEM_cert_to_DER_cert(rel.cert_file.read_text())
    assert web_get(rel, "/api/v1/workers").status_code == 200  # verified with the Secret's CA
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://{host}:{port}/healthz", timeout=10)
    worker_env = {e["name"]: e.get("value") for e in rel.kj("get", "statefulset", f"{rel.fullname}-worker")[
        "spec"]["template"]["spec"]["containers"][0]["env"]}
    assert worker_env["AIRSIDE_WEB_URL"].startswith("https://") and worker_env["AIRSIDE_TLS_CA_FILE"]


def test_web_restart_during_a_running_build_does_not_lose_it(rel: Release, tmp_path: Path) -> None:
    # the task runs until the test opens its gate, which it does only once the new web pod is ready: the
    # build is running on its worker through the whole restart
    t = write_task(tmp_path / "task.yml", f"""
platform: linux
rootfs_uri: {SAMPLE_ROOTFS}
outputs: [{{name: {GATE}}}]
run: {{path: sh, args: [-c, 'echo before; {gate_sh()}; echo after-web-restart']}}
""")
    log = tmp_path / "ex.log"
    ex = rel.cli_background("execute", "-c", str(t), "--tag", "e2e", log=log)
    try:
        wait_for(lambda: "before" in log.read_text(), 180, "the task running")
        b = rel.running_build()
        assert b, f"no running build while its task runs: {rel.builds(5)}"
        old = rel.kj("get", "pods", "-l", "app.kubernetes.io/component=web")["items"][0]["metadata"]["name"]
        rel.k("delete", "pod", old)
        wait_for(lambda: [p for p in rel.kj("get", "pods", "-l", "app.kubernetes.io/component=web")["items"]
                          if p["metadata"]["name"] != old
                          and all(c["ready"] for c in p["status"].get("containerStatuses", [{"ready": False}]))],
                 240, "a new web pod ready")
        assert ex.poll() is None and "after-web-restart" not in log.read_text(), log.read_text()
        rel.open_gate(b["worker_name"], b)
        assert ex.wait(300) == 0, log.read_text()[-3000:]
    finally:
        if ex.poll() is None:
            ex.kill()
    out = log.read_text()
    assert out.count("before") == 1 and "after-web-restart" in out
    done = rel.builds(1)[0]
    # the same attempt on the same worker: not requeued, not lost
    assert (done["id"], done["status"], done["attempt"], done["worker_name"]) == (
        b["id"], "succeeded", 1, b["worker_name"]), done
    assert "postgresql+psycopg://" in rel.logs(f"deploy/{rel.fullname}-web")  # the chart's bundled PostgreSQL
    # the workers re-attach to the new web process: both heartbeat it and are running
    wait_for(lambda: {w["state"] for w in rel.workers().values()} == {"running"}
             and set(rel.workers()) == {rel.worker_pod(0), rel.worker_pod(1)}, 60, "both workers running")
