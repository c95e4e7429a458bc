"""The deployment model and `airside render`: drift, settings coverage, overrides, determinism."""

from __future__ import annotations

import re
import signal
import stat
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from airside.cli import main
from airside.config import Settings, env_name, fields_for
from airside.packaging import model
from airside.packaging.render import MANIFEST, TARGETS, OverrideError, render, render_files, values_with
from airside.worker import signals

ROOT = Path(__file__).resolve().parents[3]
ENV_RE = re.compile(r"\bAIRSIDE_[A-Z0-9_]+\b")
SETTING_ENVS = {env_name(n) for n in Settings.model_fields}
SCRIPTS = {"compose": {"generate-secrets.sh"}, "helm": set(), "bosh": set()}  # the executable files of each render


def _tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
            and p.name not in (".env",) and "wheels" not in p.parts}


def _modes(path: Path) -> dict[str, str]:
    """The mode git records for each file of `_tree(path)`: 100755 when its owner may execute it, else 100644
    (the rest of the permission bits follow the checkout's umask, so they are not compared)."""
    return {name: "100755" if (path / name).stat().st_mode & stat.S_IXUSR else "100644" for name in _tree(path)}


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_committed_output_has_no_drift(target: str, tmp_path: Path) -> None:
    render(target, None, tmp_path)
    committed = ROOT / TARGETS[target]
    fresh, old = _tree(tmp_path), _tree(committed)
    assert sorted(fresh) == sorted(old), f"{TARGETS[target]}/ has other files than a fresh render: run `make render`"
    drifted = [name for name in fresh if fresh[name] != old[name]]
    assert not drifted, f"{TARGETS[target]}/ drifted from the model in {drifted}: run `make render` and commit"
    fresh_modes, old_modes = _modes(tmp_path), _modes(committed)
    wrong = {name: f"committed {old_modes[name]}, rendered {fresh_modes[name]}" for name in fresh
             if fresh_modes[name] != old_modes[name]}
    assert not wrong, f"{TARGETS[target]}/ file modes drifted from a fresh render: {wrong}: run `make render` and commit"
    # and the scripts an operator runs are executable (a renderer dropping the bit, re-rendered, drifts nothing)
    assert {name for name, mode in fresh_modes.items() if mode == "100755"} == SCRIPTS[target]


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_output_is_deterministic(target: str, tmp_path: Path) -> None:
    overrides = {"worker": {"replicas": 3}, "airside": {"worker": {"drain_timeout": 120, "tags": ["a", "b"]}}}
    render(target, overrides, tmp_path / "a")
    render(target, overrides, tmp_path / "b")
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")
    assert render_files(target, overrides) == render_files(target, overrides)


def test_rerender_removes_stale_files_only(tmp_path: Path) -> None:
    render("helm", None, tmp_path)
    (tmp_path / "templates" / "old.yaml").write_text("stale")
    (tmp_path / "mine.txt").write_text("operator file")
    manifest = tmp_path / MANIFEST
    manifest.write_text(manifest.read_text() + "templates/old.yaml\n")
    render("helm", None, tmp_path)
    assert not (tmp_path / "templates" / "old.yaml").exists()
    assert (tmp_path / "mine.txt").read_text() == "operator file"


def test_worker_signals_match_the_worker_module() -> None:
    assert model.RETIRE_SIGNAL == signals.signal_for(signals.Action.retire).name
    assert model.LAND_SIGNAL == signals.signal_for(signals.Action.land).name
    assert signals.action_for(getattr(signal, model.DEFAULT_SHUTDOWN_SIGNAL), ephemeral=False,
                              draining=False) == signals.Action.retire


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_every_env_var_in_the_output_is_a_setting(target: str) -> None:
    text = "\n".join(render_files(target).values())
    unknown = set(ENV_RE.findall(text)) - SETTING_ENVS - {"AIRSIDE_IMAGE", "AIRSIDE_DATABASE_URL"}
    assert not unknown, f"{target} output mentions env vars that are no settings: {sorted(unknown)}"


@pytest.mark.parametrize("role", ["web", "worker", "baggageclaim"])
def test_every_setting_of_a_role_reaches_helm_and_bosh(role: str) -> None:
    helpers = render_files("helm")["templates/_helpers.tpl"]
    block = helpers.split(f'define "airside.{role}.env"')[1].split("{{- end }}\n\n")[0]
    values = yaml.safe_load(render_files("helm")["values.yaml"])
    for name in fields_for(role):
        assert env_name(name) in block, f"{name} missing from the {role} env helper"
        if not model.settings()[list(Settings.model_fields).index(name)].secret:
            assert name in values["airside"][role], f"{name} missing from values.yaml airside.{role}"
            assert values["airside"][role][name] is None, f"chart must not pin {name}: the binary default applies"
        else:
            assert name in values["secrets"]
    if role in ("web", "worker"):
        spec = yaml.safe_load(render_files("bosh")[f"jobs/{role}/spec"])
        # file settings (certificates, keys) are BOSH properties holding the file's content: tls_cert_file → tls_cert
        assert set(spec["properties"]) == {s.content_name for s in model.settings_for(role)}
        for s in model.settings_for(role):
            assert s.content_name == s.name or s.file, s.name


def test_baggageclaim_driver_is_left_to_the_binary() -> None:
    values = values_with(None)
    assert values["airside"]["worker"]["baggageclaim_driver"] is None
    compose = yaml.safe_load(render_files("compose")["docker-compose.yml"])
    assert env_name("baggageclaim_driver") not in compose["services"]["worker"]["environment"]


def test_unknown_override_key_is_named() -> None:
    with pytest.raises(OverrideError, match=r"worker\.replicaz"):
        values_with({"worker": {"replicaz": 3}})
    with pytest.raises(OverrideError, match=r"airside\.worker\.no_such_setting"):
        values_with({"airside": {"worker": {"no_such_setting": 1}}})
    with pytest.raises(OverrideError, match=r"'nope'"):
        values_with({"nope": True})


def test_wrong_override_types_and_choices_are_named() -> None:
    with pytest.raises(OverrideError, match=r"worker\.replicas: expected integer"):
        values_with({"worker": {"replicas": "three"}})
    with pytest.raises(OverrideError, match=r"worker\.shutdownSignal: 'SIGKILL' is not one of"):
        values_with({"worker": {"shutdownSignal": "SIGKILL"}})
    with pytest.raises(OverrideError, match=r"airside\.worker\.baggageclaim_driver: 'zfs' is not one of"):
        values_with({"airside": {"worker": {"baggageclaim_driver": "zfs"}}})
    with pytest.raises(OverrideError, match=r"airside\.worker\.drain_timeout: -1 violates minimum"):
        values_with({"airside": {"worker": {"drain_timeout": -1}}})


def test_cli_render_with_overrides_and_unknown_key(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("airside:\n  worker:\n    drain_timeout: 600\nworker:\n  shutdownSignal: SIGUSR1\n")
    result = CliRunner().invoke(main, ["render", "--target", "compose", "-f", str(good), "-o", str(tmp_path / "d")])
    assert result.exit_code == 0, result.output
    worker = yaml.safe_load((tmp_path / "d" / "docker-compose.yml").read_text())["services"]["worker"]
    assert worker["stop_signal"] == "SIGUSR1"
    assert worker["stop_grace_period"] == f"{600 + model.DRAIN_MARGIN_SECONDS}s"
    assert worker["environment"][env_name("drain_timeout")] == "600"

    bad = tmp_path / "bad.yaml"
    bad.write_text("worker:\n  drainTimeout: 5\n")
    result = CliRunner().invoke(main, ["render", "--target", "helm", "-f", str(bad), "-o", str(tmp_path / "c")])
    assert result.exit_code == 2
    assert "worker.drainTimeout" in result.output and str(bad) in result.output
    assert not (tmp_path / "c").exists()


def test_compose_drain_and_health() -> None:
    files = render_files("compose")
    compose = yaml.safe_load(files["docker-compose.yml"])
    s = compose["services"]
    assert set(s) == {"postgres", "web", "worker"}
    drain = int(Settings.model_fields["drain_timeout"].default)
    assert s["worker"]["stop_signal"] == "SIGUSR2"
    assert s["worker"]["stop_grace_period"] == f"{drain + model.DRAIN_MARGIN_SECONDS}s"
    assert s["web"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert s["worker"]["depends_on"] == {"web": {"condition": "service_healthy"}}
    assert "healthcheck" in s["web"] and "healthcheck" in s["postgres"]
    assert "STOPSIGNAL SIGUSR2" in files["Dockerfile"]
    assert 'ENTRYPOINT ["/usr/bin/tini", "--", "airside"]' in files["Dockerfile"]
    no_pg = yaml.safe_load(render_files("compose", {"postgresql": {"enabled": False}})["docker-compose.yml"])
    assert "postgres" not in no_pg["services"] and "depends_on" not in no_pg["services"]["web"]


def test_helm_grace_period_follows_drain_timeout() -> None:
    values = values_with({"airside": {"worker": {"drain_timeout": 90}}})
    assert model.termination_grace_seconds(values) == 90 + model.DRAIN_MARGIN_SECONDS
    values = values_with({"worker": {"terminationGracePeriodSeconds": 7}})
    assert model.termination_grace_seconds(values) == 7


def test_bosh_manifest_carries_overrides_and_generates_secrets() -> None:
    files = render_files("bosh", {"airside": {"worker": {"tags": ["gpu"]}}, "worker": {"replicas": 4}})
    manifest = yaml.safe_load(files["airside.yml"])
    groups = {g["name"]: g for g in manifest["instance_groups"]}
    assert groups["worker"]["instances"] == 4
    assert groups["worker"]["jobs"][0]["properties"]["tags"] == ["gpu"]
    names = {v["name"] for v in manifest["variables"]}
    assert {f"airside_{s.name}" for s in model.secret_settings()} <= names
    ops = yaml.safe_load(files["operations/overlay-driver.yml"])
    assert ops[0]["value"] == "overlay"
