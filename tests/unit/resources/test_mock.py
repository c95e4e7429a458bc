"""The bundled mock resource, run for real in its rootfs: the source fields and params its README lists."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .harness import ResourceType


def test_layout_is_a_concourse_bundled_type(resource_types: dict[str, ResourceType]) -> None:
    for name, t in resource_types.items():
        meta = t.metadata
        assert (meta["type"], meta["privileged"], meta["unique_version_history"]) == (name, False, False)
        assert meta["version"].startswith("1.0.0+")
        for script in ("check", "in", "out"):
            assert (t.rootfs / "opt/resource" / script).resolve() == t.rootfs / "opt/resource" / name
        assert (t.rootfs / "bin/sh").exists(), f"{name}: no /bin/sh"


def test_check_versions(mock: ResourceType) -> None:
    assert mock.run("check", {"source": {}}).json() == [{"version": "mock"}]
    assert mock.run("check", {"source": {"initial_version": "v0"}}).json() == [{"version": "v0"}]
    assert mock.run("check", {"source": {"initial_version": "v0"}, "version": {"version": "v7"}}).json() == [
        {"version": "v7"}]
    assert mock.run("check", {"source": {"force_version": "f"}, "version": {"version": "v7"}}).json() == [
        {"version": "f"}]
    assert mock.run("check", {"source": {"no_initial_version": True}}).json() == []


def test_check_failure_and_log(mock: ResourceType) -> None:
    r = mock.run("check", {"source": {"check_failure": "the disk is on fire", "log": "hello from mock"}})
    assert r.rc == 1
    assert "intentionally failing to check: the disk is on fire" in r.stderr
    assert "hello from mock" in r.stderr and r.stdout == ""
    ok = mock.run("check", {"source": {"log": "hello again"}})
    assert ok.json() == [{"version": "mock"}] and "hello again" in ok.stderr


def test_privileged_is_reported(mock: ResourceType, work: Path) -> None:
    assert mock.run("check", {"source": {}}, privileged=True).json() == [{"version": "mock", "privileged": "true"}]
    assert mock.run("out", {"source": {}, "params": {"version": "p"}}, work,
                    privileged=True).json()["version"] == {"version": "p", "privileged": "true"}


def test_in_writes_version_and_files(mock: ResourceType, work: Path) -> None:
    source = {"create_files": {"a.yml": "foo: bar\n", "nested/obj.json": {"k": [1, 2]}, "keep.txt": "source"},
              "metadata": [{"name": "m", "value": "v"}]}
    params = {"create_files_via_params": {"keep.txt": "params win", "vars.yml": "x: START_VARfooEND_VAR"}}
    r = mock.run("in", {"source": source, "version": {"version": "v3"}, "params": params}, work)
    assert r.json() == {"version": {"version": "v3"}, "metadata": [{"name": "m", "value": "v"}]}
    assert (work / "version").read_text() == "v3\n"
    assert json.loads((work / "privileged").read_text()) is False
    assert (work / "a.yml").read_text() == "foo: bar\n"
    assert json.loads((work / "nested/obj.json").read_text()) == {"k": [1, 2]}
    assert (work / "keep.txt").read_text() == "params win"
    assert (work / "vars.yml").read_text() == "x: ((foo))"
    assert not (work / "rootfs").exists()


def test_in_refuses_a_file_outside_the_destination(mock: ResourceType, work: Path) -> None:
    r = mock.run("in", {"source": {"create_files": {"../escape": "x"}}, "version": {"version": "v"}}, work)
    assert r.rc == 1 and "not a path inside the destination" in r.stderr
    assert not (work.parent / "escape").exists()


def test_in_mirror_self_gives_a_runnable_image(mock: ResourceType, work: Path, tmp_path: Path) -> None:
    r = mock.run("in", {"source": {}, "version": {"version": "m1"}, "params": {"mirror_self_via_params": True}},
                 work)
    assert r.rc == 0, r.stderr
    assert json.loads((work / "metadata.json").read_text()) == {"env": ["MIRRORED_VERSION=m1"], "user": "root"}
    mirrored = ResourceType(work / "rootfs")
    assert (mirrored.rootfs / "bin/busybox").is_file() and (mirrored.rootfs / "tmp").is_dir()
    # the image runs, and its check starts from the mirrored version
    assert mirrored.run("check", {"source": {}}, env={"MIRRORED_VERSION": "m1"}).json() == [{"version": "m1"}]


def test_out_versions(mock: ResourceType, work: Path) -> None:
    (work / "v.txt").write_text("from-file\n")
    src = {"metadata": [{"name": "m", "value": "v"}]}
    assert mock.run("out", {"source": src, "params": {"version": "p1"}}, work).json() == {
        "version": {"version": "p1"}, "metadata": [{"name": "m", "value": "v"}]}
    assert mock.run("out", {"source": {}, "params": {"file": "v.txt"}}, work).json()["version"] == {
        "version": "from-file"}
    r = mock.run("out", {"source": {}, "params": {}}, work)
    assert r.rc == 1 and "no version specified" in r.stderr
    r = mock.run("out", {"source": {}, "params": {"file": "missing.txt"}}, work)
    assert r.rc == 1 and "missing.txt" in r.stderr


def test_out_print_env_logs_to_stderr_only(mock: ResourceType, work: Path) -> None:
    r = mock.run("out", {"source": {}, "params": {"version": "p", "print_env": True}}, work,
                 env={"BUILD_PIPELINE_NAME": "pipe-1"})
    assert r.json()["version"] == {"version": "p"}  # stdout is the response alone
    assert "env: BUILD_PIPELINE_NAME=pipe-1" in r.stderr


@pytest.mark.parametrize("type_name", ["mock", "time", "git"])
@pytest.mark.parametrize(("script", "stdin", "message"), [
    ("check", "", "stdin is empty"),
    ("check", "{not json", "not JSON"),
    ("in", '{"source": {}, "version": {"version": "x"}} {"again": 1}', "more than one JSON value"),
    ("out", '["a list"]', "invalid request"),
])
def test_malformed_stdin_fails_with_a_message(resource_types: dict[str, ResourceType], work: Path, type_name: str,
                                              script: str, stdin: str, message: str) -> None:
    r = resource_types[type_name].run(script, work=None if script == "check" else work, stdin=stdin)
    assert r.rc != 0 and r.stdout == ""
    assert message in r.stderr, r.stderr


def test_unknown_fields_are_refused_as_upstream(mock: ResourceType) -> None:
    r = mock.run("check", {"source": {"initial_versoin": "typo"}})
    assert r.rc == 1 and 'unknown field "initial_versoin"' in r.stderr


def test_in_without_a_directory_is_a_usage_error(mock: ResourceType) -> None:
    r = mock.run("in", {"source": {}, "version": {"version": "x"}})
    assert r.rc == 1 and "usage: /opt/resource/in <destination directory>" in r.stderr
