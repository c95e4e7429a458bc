"""web over HTTPS: a worker and the CLI verify it with tls_ca_file; bad certificates and clients that do
not trust the CA fail with errors that say what to fix."""

from __future__ import annotations

import ssl
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from airside.config import env_name
from tests.procs import WebProc, WorkerProc, cli_env, run_cli, state_of, wait_for
from tests.tlscerts import CertFiles, make_certs


@pytest.fixture
def certs(tmp_path: Path) -> CertFiles:
    return make_certs(tmp_path / "tls")


@pytest.fixture
def tls_web(tmp_path: Path, certs: CertFiles):
    w = WebProc(tmp_path, ca_file=certs.ca, tls_cert_file=certs.cert, tls_key_file=certs.key).start()
    yield w
    w.stop()


def test_worker_registers_and_runs_a_task_over_https(tls_web: WebProc, certs: CertFiles, tmp_path: Path) -> None:
    # web's port speaks TLS with the configured certificate (read from the socket: the URL's scheme is only
    # what the harness wrote)
    served = ssl.get_server_certificate(("127.0.0.1", tls_web.port), timeout=10)
    assert ssl.PEM_cert_to_DER_cert(served) == ssl.PEM_cert_to_DER_cert(certs.cert.read_text())
    wk = WorkerProc(tmp_path, tls_web, "tls1").start()
    try:
        wait_for(lambda: state_of(tls_web.client(), "tls1") == "running", what="worker running over https")
        task = tmp_path / "task.yml"
        task.write_text(textwrap.dedent("""\
            platform: linux
            image_resource: {type: registry-image, source: {repository: unused}}
            rootfs_uri: /
            outputs: [{name: out}]
            run: {path: sh, args: [-c, "echo over-tls > out/said; echo hello from https"]}
        """))
        r = run_cli(tls_web, "execute", "-c", str(task), "-o", f"out={tmp_path / 'out'}")
        assert r.returncode == 0, r.stderr + r.stdout
        assert "hello from https" in r.stdout
        assert (tmp_path / "out" / "said").read_text() == "over-tls\n"
    finally:
        wk.stop()


def test_plain_http_to_an_https_web_is_refused(tls_web: WebProc) -> None:
    with pytest.raises(httpx.TransportError):
        httpx.get(tls_web.url.replace("https://", "http://") + "/healthz", timeout=5)


def test_client_without_the_ca_says_which_setting_fixes_it(tls_web: WebProc, tmp_path: Path) -> None:
    env = {"AIRSIDE_WEB_URL": tls_web.url, "AIRSIDE_TOKEN": tls_web.TOKEN, "AIRSIDE_DATA_DIR": str(tmp_path / "c"),
           "PATH": "/usr/bin:/bin", "SSL_CERT_FILE": "", "COLUMNS": "200"}
    r = subprocess.run([sys.executable, "-m", "airside.cli", "workers"], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2
    assert "CERTIFICATE_VERIFY_FAILED" in r.stderr and env_name("tls_ca_file") in r.stderr, r.stderr


def test_a_ca_that_did_not_sign_web_is_not_trusted(tls_web: WebProc, tmp_path: Path) -> None:
    other = make_certs(tmp_path / "other", ca_name="other-ca")
    r = run_cli(tls_web, "workers")
    assert r.returncode == 0, r.stderr  # the right CA works ...
    tls_web.ca_file = other.ca
    r = run_cli(tls_web, "workers")  # ... another one does not
    assert r.returncode == 2 and "CERTIFICATE_VERIFY_FAILED" in r.stderr, r.stderr


def test_worker_with_an_unreadable_ca_file_stops_with_the_reason(tls_web: WebProc, tmp_path: Path) -> None:
    wk = WorkerProc(tmp_path, tls_web, "tls2", tls_ca_file=tmp_path / "missing-ca.pem").start()
    try:
        assert wk.wait(60) != 0
        assert "tls_ca_file" in wk.output() and "missing-ca.pem" in wk.output(), wk.output()[-2000:]
        assert state_of(tls_web.client(), "tls2") is None
    finally:
        wk.stop()


def _web_start_error(tmp_path: Path, **settings: object) -> str:
    """Start `airside web` with `settings`: it must exit with a usage error instead of serving."""
    web = WebProc(tmp_path, **settings)
    proc = subprocess.Popen([sys.executable, "-m", "airside.cli", "web"], env=cli_env(web.settings),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2, out
    return out


def test_web_needs_both_cert_and_key(tmp_path: Path, certs: CertFiles) -> None:
    out = _web_start_error(tmp_path, tls_cert_file=certs.cert)
    assert "tls_key_file" in out and env_name("tls_key_file") in out, out


def test_web_refuses_a_key_that_does_not_match_the_certificate(tmp_path: Path, certs: CertFiles) -> None:
    other = make_certs(tmp_path / "other")
    out = _web_start_error(tmp_path, tls_cert_file=certs.cert, tls_key_file=other.key)
    assert str(certs.cert) in out and str(other.key) in out, out


def test_web_names_a_missing_certificate_file(tmp_path: Path, certs: CertFiles) -> None:
    out = _web_start_error(tmp_path, tls_cert_file=tmp_path / "nope.pem", tls_key_file=certs.key)
    assert "nope.pem" in out and "No such file" in out, out
