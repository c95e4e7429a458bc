import click
import pytest
from click.testing import CliRunner

from airside.config import WEB, WORKER, Settings, fields_for
from airside.core.options import load_settings, settings_options


def test_env_prefix_and_comma_tags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRSIDE_TAGS", "gpu, big ,")
    monkeypatch.setenv("AIRSIDE_HEARTBEAT_TTL", "7.5")
    s = Settings()
    assert s.tags == ["gpu", "big"] and s.heartbeat_ttl == 7.5


def test_postgres_urls_use_psycopg_and_sqlite_is_default(tmp_path) -> None:
    assert Settings(database_url="postgresql://u@h/db").resolved_database_url == "postgresql+psycopg://u@h/db"
    assert Settings(data_dir=tmp_path).resolved_database_url == f"sqlite:///{tmp_path}/airside.db"


def test_roles_select_fields() -> None:
    web, worker = fields_for(WEB), fields_for(WORKER)
    assert "database_url" in web and "database_url" not in worker
    assert "drain_timeout" in worker and "drain_timeout" not in web
    assert "log_level" in web and "log_level" in worker


def test_every_setting_is_documented() -> None:
    for name, field in Settings.model_fields.items():
        assert field.description, name
        assert (field.json_schema_extra or {}).get("roles"), name


def test_flags_are_derived_and_flags_beat_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRSIDE_HEARTBEAT_INTERVAL", "3")
    seen = {}

    @click.command()
    @settings_options(WORKER)
    def cmd(**kw):
        seen["s"] = load_settings(kw)

    r = CliRunner().invoke(cmd, ["--worker-name", "w9", "--ephemeral", "--tags", "a,b"])
    assert r.exit_code == 0, r.output
    s = seen["s"]
    assert (s.worker_name, s.ephemeral, s.tags, s.heartbeat_interval) == ("w9", True, ["a", "b"], 3.0)
    r = CliRunner().invoke(cmd, ["--heartbeat-interval", "-1"])
    assert r.exit_code != 0 and "heartbeat_interval (--heartbeat-interval, AIRSIDE_HEARTBEAT_INTERVAL)" in r.output


def test_tls_needs_cert_and_key_together(tmp_path) -> None:
    with pytest.raises(click.UsageError) as e:
        load_settings({"tls_cert_file": tmp_path / "c.pem"})
    assert "tls_key_file" in str(e.value) and "AIRSIDE_TLS_KEY_FILE" in str(e.value)
    s = Settings(tls_cert_file=tmp_path / "c.pem", tls_key_file=tmp_path / "k.pem")
    assert s.web_scheme == "https" and Settings().web_scheme == "http"


def test_client_tls_verification(tmp_path) -> None:
    from airside.core.client import WebError, tls_verify

    assert tls_verify("http://w:8080", tmp_path / "missing.pem") is False  # plain HTTP never loads a CA
    assert tls_verify("https://w:8080", None) is True  # the system's CAs
    with pytest.raises(WebError, match="missing.pem"):
        tls_verify("https://w:8080", tmp_path / "missing.pem")
