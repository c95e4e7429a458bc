"""web's API against a real `airside web` process: auth, bad input, health, metrics, key pairs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from airside.core import auth
from airside.core.client import WebClient
from airside.core.schemas import new_boot_epoch
from tests.procs import WebProc, WorkerProc, state_of, wait_for


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory):
    w = WebProc(tmp_path_factory.mktemp("api"), max_request_bytes=4096, heartbeat_ttl=30).start()
    yield w
    w.stop()


def _reg(name: str, **kw) -> dict:
    return {"name": name, "boot_epoch": new_boot_epoch(), **kw}


def _op(web: WebProc) -> dict:
    return {"Authorization": f"Bearer {web.TOKEN}"}


def _wk(web: WebProc) -> dict:
    return {"Authorization": f"Bearer {web.WORKER_TOKEN}"}


def _names(web: WebProc) -> list[str]:
    return [w["name"] for w in httpx.get(web.url + "/api/v1/workers", headers=_op(web)).json()]


def test_health_ready_openapi(web: WebProc) -> None:
    assert httpx.get(web.url + "/healthz").text == "ok"
    assert httpx.get(web.url + "/readyz").text == "ready"
    spec = httpx.get(web.url + "/openapi.json").json()
    assert "/api/v1/workers" in spec["paths"] and "/api/v1/workers/{name}/heartbeat" in spec["paths"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"},
                                     {"Authorization": "AirsideWorker x:1:abc"}])
def test_unauthenticated_calls_get_401_and_change_nothing(web: WebProc, headers: dict) -> None:
    before = _names(web)
    r = httpx.post(web.url + "/api/v1/workers", json=_reg("intruder"), headers=headers)
    assert r.status_code == 401
    assert httpx.get(web.url + "/api/v1/workers", headers=headers).status_code == 401
    assert httpx.put(web.url + "/api/v1/workers/intruder/prune", headers=headers).status_code == 401
    assert _names(web) == before


def test_worker_token_cannot_do_operator_things(web: WebProc) -> None:
    assert httpx.post(web.url + "/api/v1/workers", json=_reg("wt"), headers=_wk(web)).status_code == 200
    assert httpx.get(web.url + "/api/v1/workers", headers=_wk(web)).status_code == 403
    assert httpx.put(web.url + "/api/v1/workers/wt/prune", headers=_wk(web)).status_code == 403


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b"{not json", 422, "JSON"),
        (json.dumps({"name": "bad name!", "boot_epoch": new_boot_epoch()}).encode(), 422, "name"),
        (json.dumps({"name": "x"}).encode(), 422, "boot_epoch"),
        (json.dumps({"name": "x", "boot_epoch": "nope"}).encode(), 422, "boot_epoch"),
        (json.dumps({**_reg("x"), "colour": "red"}).encode(), 422, "colour"),
        (json.dumps({**_reg("x"), "tags": "notalist"}).encode(), 422, "tags"),
        (json.dumps({**_reg("x"), "active_containers": -1}).encode(), 422, "active_containers"),
        (json.dumps({**_reg("x"), "tags": ["t"] * 10_000}).encode(), 413, "larger than 4096"),
    ],
)
def test_malformed_registrations_get_4xx_naming_the_problem(web: WebProc, body: bytes, status: int, needle: str) -> None:
    before = _names(web)
    r = httpx.post(web.url + "/api/v1/workers", content=body,
                   headers={**_wk(web), "Content-Type": "application/json"})
    assert r.status_code == status, r.text
    assert needle in r.text
    assert _names(web) == before


def test_chunked_oversized_body_is_refused(web: WebProc) -> None:
    def chunks():
        yield b'{"name": "big", "boot_epoch": "' + b"a" * 3000
        yield b"b" * 3000 + b'"}'

    r = httpx.post(web.url + "/api/v1/workers", content=chunks(), headers={**_wk(web), "Content-Type": "application/json"})
    assert r.status_code == 413
    assert "big" not in _names(web)


def test_older_epoch_for_a_taken_name_is_refused(web: WebProc) -> None:
    old, new = new_boot_epoch(), new_boot_epoch()
    assert httpx.post(web.url + "/api/v1/workers", json={"name": "dupe", "boot_epoch": new}, headers=_wk(web)).status_code == 200
    r = httpx.post(web.url + "/api/v1/workers", json={"name": "dupe", "boot_epoch": old, "platform": "windows"},
                   headers=_wk(web))
    assert r.status_code == 409 and "taken by a newer process" in r.json()["detail"]
    w = httpx.get(web.url + "/api/v1/workers/dupe", headers=_op(web)).json()
    assert (w["boot_epoch"], w["platform"]) == (new, "linux")
    r = httpx.put(web.url + "/api/v1/workers/dupe/heartbeat", json={"boot_epoch": old}, headers=_wk(web))
    assert r.status_code == 409


def test_transitions_that_make_no_sense_are_refused(web: WebProc) -> None:
    e = new_boot_epoch()
    httpx.post(web.url + "/api/v1/workers", json={"name": "t", "boot_epoch": e}, headers=_wk(web))
    r = httpx.put(web.url + "/api/v1/workers/t/landed", params={"boot_epoch": e}, headers=_wk(web))
    assert r.status_code == 409 and "not landing" in r.text
    r = httpx.delete(web.url + "/api/v1/workers/t", params={"boot_epoch": e}, headers=_wk(web))
    assert r.status_code == 409 and "not retiring" in r.text
    assert httpx.put(web.url + "/api/v1/workers/t/retire", headers=_wk(web)).json()["state"] == "retiring"
    r = httpx.put(web.url + "/api/v1/workers/t/land", headers=_wk(web))
    assert r.status_code == 409 and "retiring" in r.text
    assert httpx.put(web.url + "/api/v1/workers/nobody/land", headers=_op(web)).status_code == 404


def test_metrics_carry_states_and_heartbeat_age(web: WebProc) -> None:
    httpx.post(web.url + "/api/v1/workers", json=_reg("metered"), headers=_wk(web))
    text = httpx.get(web.url + "/metrics").text
    assert 'airside_workers{state="running"}' in text
    assert 'airside_worker_heartbeat_age_seconds{state="running",worker="metered"}' in text


def test_cli_reports_unreachable_web_clearly(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "airside.cli", "workers", "--web-url", "http://127.0.0.1:1", "--token", "x"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "cannot reach web at http://127.0.0.1:1" in r.stderr


def test_cli_workers_json_and_table(web: WebProc) -> None:
    httpx.post(web.url + "/api/v1/workers", json=_reg("listed", tags=["a", "b"]), headers=_wk(web))
    env = {"AIRSIDE_WEB_URL": web.url, "AIRSIDE_TOKEN": web.TOKEN, "PATH": "/usr/bin:/bin", "COLUMNS": "200"}
    r = subprocess.run([sys.executable, "-m", "airside.cli", "workers", "--json"], env=env, capture_output=True, text=True)
    listed = {w["name"]: w for w in json.loads(r.stdout)}
    assert listed["listed"]["tags"] == ["a", "b"] and listed["listed"]["state"] == "running"
    r = subprocess.run([sys.executable, "-m", "airside.cli", "workers"], env=env, capture_output=True, text=True)
    assert "listed" in r.stdout and "a,b" in r.stdout


def test_worker_key_pair_auth(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "airside.cli", "keygen", "-o", str(tmp_path / "keys")], check=True,
                   capture_output=True)
    keys = tmp_path / "keys"
    web = WebProc(tmp_path, authorized_worker_keys=keys / "authorized_worker_keys").start()
    try:
        wk = WorkerProc(tmp_path, web, "keyed", worker_key=keys / "worker_key", worker_token=None).start()
        c = web.client()
        wait_for(lambda: state_of(c, "keyed") == "running", what="key-authenticated worker running")
        # the key proves the name: it cannot act for another worker
        key = auth.load_private_key(keys / "worker_key")
        other = WebClient(web.url, auth=auth.WorkerKeyAuth(key, "keyed"))
        r = other.http.post("/api/v1/workers", json={"name": "someone-else", "boot_epoch": new_boot_epoch()})
        assert r.status_code == 403 and "cannot act for worker 'someone-else'" in r.text
        # a key web does not know is refused
        pem, _pub = auth.generate_keypair()
        (tmp_path / "stranger").write_bytes(pem)
        stranger = WebClient(web.url, auth=auth.WorkerKeyAuth(auth.load_private_key(tmp_path / "stranger"), "keyed"))
        assert stranger.http.get("/api/v1/workers/keyed").status_code == 401
        wk.stop()
    finally:
        web.stop()
