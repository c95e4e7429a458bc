"""BOSH jobs: spec properties and template references agree, and every ERB renders with Ruby's ERB
(Debian's ruby) through a small harness that behaves like the director (p, if_p/else, spec, link)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from airside.config import env_name
from airside.packaging.render import render_files
from tests.procs import wait_for

HARNESS = Path(__file__).with_name("bosh_harness.rb")
JOBS = ("web", "worker")
PROP_RE = re.compile(r"""(?<![.\w])(?:p|if_p)\(\s*"([^"]+)"\s*""")
LINK_PROP_RE = re.compile(r"""\bweb\.(?:p|if_p)\(\s*"([^"]+)"\s*""")

needs_ruby = pytest.mark.skipif(shutil.which("ruby") is None, reason="needs Debian's ruby (apt-get install -y ruby)")


@pytest.fixture(scope="module")
def files() -> dict[str, str]:
    return render_files("bosh")


def spec(files: dict[str, str], job: str) -> dict[str, Any]:
    return yaml.safe_load(files[f"jobs/{job}/spec"])


@pytest.mark.parametrize("job", JOBS)
def test_spec_properties_and_template_references_agree(files: dict[str, str], job: str) -> None:
    s = spec(files, job)
    declared = set(s["properties"])
    templates = {name: text for name, text in files.items() if name.startswith(f"jobs/{job}/templates/")}
    assert {f"jobs/{job}/templates/{t}" for t in s["templates"]} == set(templates)
    referenced = {m for text in templates.values() for m in PROP_RE.findall(text)}
    for provided in s.get("provides", []):
        referenced |= set(provided.get("properties", []))
    assert referenced - declared == set(), f"templates use undeclared properties: {referenced - declared}"
    assert declared - referenced == set(), f"spec properties no template uses: {declared - referenced}"
    link_props = {m for text in templates.values() for m in LINK_PROP_RE.findall(text)}
    provided = {p for provider in JOBS for link in spec(files, provider).get("provides", [])
                for p in link.get("properties", [])}
    assert link_props <= provided, f"link properties nobody provides: {link_props - provided}"


def test_manifest_properties_exist_in_specs(files: dict[str, str]) -> None:
    manifest = yaml.safe_load(files["airside.yml"])
    for group in manifest["instance_groups"]:
        for job in group["jobs"]:
            if job["release"] != "airside":
                continue
            unknown = set(job.get("properties", {})) - set(spec(files, job["name"])["properties"])
            assert not unknown, f"{group['name']}/{job['name']}: {unknown}"
    ops_files = [name for name in files if name.startswith("operations/")]
    assert {"operations/external-postgres.yml", "operations/overlay-driver.yml", "operations/tls.yml"} <= set(ops_files)
    for ops_name in ops_files:
        for op in yaml.safe_load(files[ops_name]):
            m = re.match(r"/instance_groups/name=(\w+)/jobs/name=(\w+)/properties/(\w+)\??$", op["path"])
            if m:
                assert m.group(3) in spec(files, m.group(2))["properties"], op["path"]


def _defaults(files: dict[str, str], job: str) -> dict[str, Any]:
    return {k: v.get("default") for k, v in spec(files, job)["properties"].items()}


def erb(tmp_path: Path, template: str, properties: dict[str, Any], links: dict[str, Any] | None = None) -> str:
    ctx = {"properties": properties, "links": links or {},
           "spec": {"deployment": "airside", "name": "worker", "index": 1, "address": "10.0.0.7",
                    "id": "b1e5", "ip": "10.0.0.7", "az": "z1"}}
    tpl, ctx_file = tmp_path / "t.erb", tmp_path / "ctx.json"
    tpl.write_text(template)
    ctx_file.write_text(json.dumps(ctx))
    done = subprocess.run(["ruby", str(HARNESS), str(tpl), str(ctx_file)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _env(sh: str) -> dict[str, str]:
    out = {}
    for line in sh.splitlines():
        if line.startswith("export "):
            k, _, v = line[len("export "):].partition("=")
            out[k] = v
    return out


@needs_ruby
@pytest.mark.parametrize("job", JOBS)
def test_every_erb_renders(files: dict[str, str], job: str, tmp_path: Path) -> None:
    props = _defaults(files, job)
    props.update({"token": "t0k", "worker_token": "w0k", "baggageclaim_token": "b0k",
                  "database_url": "postgresql://a:b@db:5432/airside"})
    links = {"airside-web": {"address": "web.airside.bosh", "properties": {"bind_port": 8080}}}
    for name in spec(files, job)["templates"]:
        out = erb(tmp_path, files[f"jobs/{job}/templates/{name}"], props, links)
        assert "<%" not in out
        if name.endswith((".sh.erb", "ctl.erb", "drain.erb")) and out.startswith("#!"):
            subprocess.run(["bash", "-n"], input=out, text=True, check=True)
        if name == "env.sh.erb":
            env = _env(out)
            if job == "worker":
                assert env[env_name("web_url")] == "http://web.airside.bosh:8080"
                assert env[env_name("worker_name")] == "airside-worker-1"
                assert env[env_name("baggageclaim_url")] == "http://10.0.0.7:7788"
                assert env[env_name("worker_token")] == "w0k"
            subprocess.run(["bash", "-n"], input=out, text=True, check=True)


@needs_ruby
def test_env_quotes_values_and_joins_lists(files: dict[str, str], tmp_path: Path) -> None:
    props = _defaults(files, "worker")
    props.update({"tags": ["gpu", "big disk"], "web_url": "http://x:1", "worker_name": "w; rm -rf /"})
    out = erb(tmp_path, files["jobs/worker/templates/env.sh.erb"], props)
    env = subprocess.run(["bash", "-c", out + f"\nprintf '%s\\n' \"${env_name('tags')}\" \"${env_name('worker_name')}\""],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert env == ["gpu,big disk", "w; rm -rf /"]


@needs_ruby
def test_drain_script_protocol(files: dict[str, str], tmp_path: Path) -> None:
    """Run the rendered drain script against a real process standing in for the worker."""
    drain = erb(tmp_path, files["jobs/worker/templates/drain.erb"], _defaults(files, "worker"))
    root = tmp_path / "vcap"
    script = drain.replace("/var/vcap", str(root))
    (tmp_path / "drain").write_text(script)
    (tmp_path / "drain").chmod(0o755)
    (root / "sys/run/worker").mkdir(parents=True)
    pidfile = root / "sys/run/worker/worker.pid"

    def run(*args: str) -> str:
        return subprocess.run([str(tmp_path / "drain"), *args], capture_output=True, text=True, check=True,
                              timeout=10).stdout

    # no worker: drained
    assert run("job_shutdown").strip() == "0"
    for arg, sig in (("job_shutdown", "USR2"), ("job_changed", "USR1")):
        marker, trapped = tmp_path / f"got-{sig}", tmp_path / f"trapping-{sig}"
        # the stand-in idles in 0.1 s sleeps; it says when its trap is set (a signal before that kills it)
        proc = subprocess.Popen(["bash", "-c", f"trap 'touch {marker}; exit 0' {sig}; touch {trapped}; "
                                               "while :; do sleep 0.1; done"])
        try:
            pidfile.write_text(str(proc.pid))
            wait_for(trapped.exists, 10, f"the stand-in worker to set its SIG{sig} trap")
            assert run(arg).strip() == "-5"  # dynamic drain: ask again in 5s
            proc.wait(timeout=5)
            assert marker.exists(), f"{arg} should send SIG{sig}"
            assert run("job_check_status").strip() == "0"
        finally:
            proc.kill()
    log = (root / "sys/log/worker/drain.log").read_text()
    assert "retire" in log and "land" in log


def test_tls_ops_file_wires_certificate_variables_to_properties(files: dict[str, str]) -> None:
    ops = yaml.safe_load(files["operations/tls.yml"])
    props = {op["path"].rsplit("/", 1)[-1].rstrip("?"): op["value"] for op in ops if "/properties/" in op["path"]}
    assert props == {"tls_cert": "((airside_web_tls.certificate))", "tls_key": "((airside_web_tls.private_key))",
                     "tls_ca": "((airside_web_tls.ca))"}
    variables = {op["value"]["name"]: op["value"] for op in ops if op["path"] == "/variables/-"}
    assert variables["airside_ca"]["options"]["is_ca"] is True
    assert variables["airside_web_tls"]["options"]["ca"] == "airside_ca"
    # workers reach web through the link's BOSH DNS address: the certificate must name it
    assert "*.web.((network_name)).((deployment_name)).bosh" in variables["airside_web_tls"]["options"][
        "alternative_names"]


def _vcap_tree(tmp_path: Path, files: dict[str, str], job: str, props: dict[str, Any],
               links: dict[str, Any] | None = None) -> dict[str, str]:
    """Render a job like the director would into tmp_path/vcap and return the env its env.sh exports."""
    root = tmp_path / "vcap"
    for name, target in spec(files, job)["templates"].items():
        out = root / "jobs" / job / target
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(erb(tmp_path, files[f"jobs/{job}/templates/{name}"], props, links).replace("/var/vcap",
                                                                                                   str(root)))
    script = f". {root}/jobs/{job}/config/env.sh && env -0"
    out = subprocess.run(["bash", "-c", script], capture_output=True, env={"PATH": "/usr/bin:/bin"}, check=True).stdout
    return {k: v for k, _, v in (e.partition("=") for e in out.decode().split("\0") if e) if k.startswith("AIRSIDE_")}


@needs_ruby
def test_tls_deployment_runs_real_web_and_worker_over_https(files: dict[str, str], tmp_path: Path) -> None:
    """The ops file's properties, rendered by the jobs' templates, make a real web serve HTTPS and a real worker
    find it through the link (https), verify it with the CA and register."""
    from tests.procs import Proc, WebProc, state_of, wait_for
    from tests.tlscerts import make_certs

    def settings(env: dict[str, str]) -> dict[str, str]:
        return {k.removeprefix("AIRSIDE_").lower(): v for k, v in env.items()}

    certs = make_certs(tmp_path / "ca", hosts=("127.0.0.1",))
    web = WebProc(tmp_path, ca_file=certs.ca)
    web_props = {**_defaults(files, "web"), "token": "op-t0k", "worker_token": "w0k", "bind_host": "127.0.0.1",
                 "bind_port": web.port, "data_dir": str(tmp_path / "web"), "tls_cert": certs.cert.read_text(),
                 "tls_key": certs.key.read_text()}
    web_env = _vcap_tree(tmp_path / "w", files, "web", web_props)
    assert web_env[env_name("tls_key_file")].endswith("/jobs/web/config/files/tls_key")
    links = {"airside-web": {"address": "127.0.0.1",
                             "properties": {"bind_port": web.port, "tls_cert": web_props["tls_cert"]}}}
    worker_props = {**_defaults(files, "worker"), "worker_token": "w0k", "tls_ca": certs.ca.read_text(),
                    "data_dir": str(tmp_path / "worker"), "baggageclaim_bind_host": "127.0.0.1",
                    "baggageclaim_bind_port": 0, "baggageclaim_driver": "naive", "worker_runtime": "process",
                    "heartbeat_interval": 0.5}
    worker_env = _vcap_tree(tmp_path / "k", files, "worker", worker_props, links)
    assert worker_env[env_name("web_url")] == f"https://127.0.0.1:{web.port}"

    web.settings.update(settings(web_env))
    web.url = f"https://127.0.0.1:{web.port}"
    worker = Proc(["worker"], settings(worker_env), tmp_path / "bosh-worker.log")
    try:
        web.start()
        worker.start()
        wait_for(lambda: state_of(web.client("op-t0k"), "airside-worker-1") == "running", 60,
                 f"worker registered over https\n{worker.output()[-2000:]}")
    finally:
        worker.stop()
        web.stop()


@pytest.mark.parametrize("ops_names", [
    ("operations/tls.yml",), ("operations/external-postgres.yml",), ("operations/overlay-driver.yml",),
    ("operations/external-postgres.yml", "operations/overlay-driver.yml", "operations/tls.yml"),
])
def test_ops_files_apply_to_the_manifest(files: dict[str, str], ops_names: tuple[str, ...]) -> None:
    """Every op's path resolves in the manifest (as `bosh int -o` would), and the result still names only
    declared job properties."""
    from tests.integration.packaging.gopatch import apply

    manifest = yaml.safe_load(files["airside.yml"])
    for name in ops_names:
        manifest = apply(manifest, yaml.safe_load(files[name]))
    for group in manifest["instance_groups"]:
        for job in group["jobs"]:
            if job["release"] == "airside":
                assert set(job.get("properties", {})) <= set(spec(files, job["name"])["properties"])
    if "operations/tls.yml" in ops_names:
        web = next(g for g in manifest["instance_groups"] if g["name"] == "web")["jobs"][0]["properties"]
        assert web["tls_cert"] == "((airside_web_tls.certificate))"
        assert {v["name"] for v in manifest["variables"]} >= {"airside_ca", "airside_web_tls"}
    if "operations/external-postgres.yml" in ops_names:
        assert all(g["name"] != "db" for g in manifest["instance_groups"])


def test_gopatch_stand_in_rejects_paths_that_do_not_exist(files: dict[str, str]) -> None:
    from tests.integration.packaging.gopatch import PatchError, apply

    manifest = yaml.safe_load(files["airside.yml"])
    with pytest.raises(PatchError, match="name=nope"):
        apply(manifest, [{"type": "replace", "path": "/instance_groups/name=nope/jobs/name=web/properties/x?",
                          "value": 1}])
    with pytest.raises(PatchError, match="name=db"):
        apply(apply(manifest, [{"type": "remove", "path": "/instance_groups/name=db"}]),
              [{"type": "remove", "path": "/instance_groups/name=db"}])


def test_release_has_the_packages_its_jobs_need(files: dict[str, str]) -> None:
    packages = {name.split("/")[1] for name in files if name.startswith("packages/")}
    for job in JOBS:
        assert set(spec(files, job)["packages"]) <= packages
    for name in packages:
        pkg = yaml.safe_load(files[f"packages/{name}/spec"])
        assert pkg["name"] == name and set(pkg.get("dependencies", [])) <= packages
        subprocess.run(["bash", "-n"], input=files[f"packages/{name}/packaging"], text=True, check=True)
    assert yaml.safe_load(files["config/final.yml"])["name"] == "airside"


def test_airside_package_compiles_from_vendored_wheels(files: dict[str, str], tmp_path: Path) -> None:
    """tools/bosh/vendor-blobs.sh fills the blobs, then the package's packaging script runs as on a BOSH
    compilation VM (cwd = compile dir with the blobs, no index) against this host's CPython 3.11 in place of
    the python3 package; the installed `airside` runs."""
    import sys

    root = Path(__file__).resolve().parents[3]
    compile_dir, install = tmp_path / "compile", tmp_path / "packages" / "airside"
    vendor = subprocess.run(["bash", str(root / "tools/bosh/vendor-blobs.sh"), str(compile_dir)],
                            capture_output=True, text=True, timeout=1200, env={**os.environ, "PYTHON": sys.executable})
    assert vendor.returncode == 0, vendor.stderr[-3000:]
    assert list((compile_dir / "airside").glob("airside-*.whl"))
    (tmp_path / "packaging").write_text(files["packages/airside/packaging"])
    env = {"PATH": "/usr/bin:/bin", "BOSH_COMPILE_TARGET": str(compile_dir), "BOSH_INSTALL_TARGET": str(install),
           "PACKAGING_PYTHON": sys.executable, "HOME": str(tmp_path)}
    done = subprocess.run(["bash", str(tmp_path / "packaging")], cwd=compile_dir, env=env, capture_output=True,
                          text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    from airside import __version__

    assert __version__ in done.stdout
    out = subprocess.run([str(install / "bin/airside"), "worker", "--help"], capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin"}, timeout=120)
    assert out.returncode == 0 and "--drain-timeout" in out.stdout, out.stderr
