"""((var)) interpolation with fly's -v/-y/-l rules (airside.pipeline.vars), lines kept after it."""

from __future__ import annotations

import pytest

from airside.pipeline import PipelineConfigError, StaticVars, VarFlagError, load_pipeline_config
from airside.pipeline.vars import parse_reference

PIPELINE = """\
resources:
- name: repo
  type: git
  source:
    uri: ((repo.uri))
    branch: release-((version))
    depth: ((depth))
jobs:
- name: build
  plan:
  - get: repo
    attempts: ((attempts))
  - task: t
    file: repo/((task-file))
    params: ((params))
  - put: repo
    params: {token: ((vault:token)), local: ((.:x))}
"""


def load(text: str = PIPELINE, **flags):
    return load_pipeline_config(text, "p.yml", StaticVars.from_flags(**flags))


def source(loaded) -> dict:
    return (loaded.config.resources or [])[0].source


def test_unset_vars_are_left_and_listed_with_their_lines():
    loaded = load()
    assert loaded.unset == {"attempts": [12], "depth": [7], "params": [15], "repo.uri": [5],
                            "task-file": [14], "version": [6]}
    assert loaded.later == {"vault:token": [17], ".:x": [17]}
    assert source(loaded)["uri"] == "((repo.uri))"


def test_v_is_a_string_y_keeps_its_type_and_fields_nest():
    loaded = load(var=["repo.uri=https://x", "version=2", "depth=3"], yaml_var=["attempts=3", "params={A: 1}"])
    assert source(loaded) == {"uri": "https://x", "branch": "release-2", "depth": "3"}
    job = (loaded.config.jobs or [])[0]
    assert job.plan[0].attempts == 3
    assert job.plan[1].params == {"A": 1}
    assert set(loaded.unset) == {"task-file"}


def test_precedence_later_flags_win_y_beats_v_flags_beat_files_later_files_win():
    files = [("a.yml", "version: from-a\ndepth: 1\nattempts: 1\n"), ("b.yml", "version: from-b\n")]
    loaded = load(var=["depth=v1", "depth=v2", "attempts=9"], yaml_var=["attempts=2"], load_vars_from=files)
    src = source(loaded)
    assert src["branch"] == "release-from-b"      # later -l wins
    assert src["depth"] == "v2"                   # later -v wins; flags beat files
    assert (loaded.config.jobs or [])[0].plan[0].attempts == 2  # -y beats -v whatever the order


def test_errors_after_interpolation_name_the_original_line():
    with pytest.raises(PipelineConfigError) as info:
        load(yaml_var=["attempts=0", "params=[1, 2]", "depth={a: 1}"], var=["version=1"])
    got = [(p.line, p.field, p.message) for p in info.value.problems]
    assert (12, "jobs[0].plan[0].attempts", "expected an integer greater than 0, got 0") in got
    assert (15, "jobs[0].plan[1].params", "expected a mapping, got a list") in got
    assert len(got) == 2, got


def test_a_list_or_map_cannot_go_into_a_string():
    with pytest.raises(PipelineConfigError) as info:
        load(yaml_var=["version=[1]"])
    assert [str(p) for p in info.value.problems] == [
        "p.yml:6: resources[0].source.branch: cannot interpolate a list into a string: ((version))"]


def test_a_missing_field_of_a_set_var_is_an_error():
    with pytest.raises(PipelineConfigError) as info:
        load(yaml_var=["repo={url: x}"])
    assert [str(p) for p in info.value.problems] == [
        "p.yml:5: resources[0].source.uri: missing field 'uri' in var: repo.uri"]


def test_anchors_and_aliases_work_and_errors_point_at_the_anchor():
    text = """\
shared:
  get-repo: &get-repo
    get: repo
    trigger: ((trigger))
resources:
- {name: repo, type: git, source: {uri: x}}
jobs:
- name: a
  plan: [*get-repo]
- name: b
  plan:
  - <<: *get-repo
    passed: [a]
"""
    loaded = load(text, yaml_var=["trigger=true"])
    assert [s.trigger for j in loaded.config.jobs or [] for s in j.plan] == [True, True]
    with pytest.raises(PipelineConfigError) as info:
        load(text, var=["trigger=yes"])
    assert [(p.line, p.field) for p in info.value.problems] == [
        (4, "jobs[0].plan[0].trigger"), (4, "jobs[1].plan[0].trigger")]


def test_keys_are_interpolated_and_keep_their_lines():
    text = "resources:\n- name: r\n  type: git\n  ((key)): x\njobs:\n- {name: j, plan: [{get: r}]}\n"
    with pytest.raises(PipelineConfigError) as info:
        load(text, var=["key=colour"])
    assert [(p.line, p.field) for p in info.value.problems] == [(4, "resources[0].colour")]
    assert "unknown key 'colour'" in info.value.problems[0].message
    load(text, var=["key=icon"])


def test_shell_arithmetic_and_spaced_parens_are_not_vars():
    text = ("resources: []\njobs:\n- name: j\n  plan:\n  - task: t\n    config:\n      platform: linux\n"
            "      run: {path: sh, args: [-c, 'echo $((i+1)) (( a b ))']}\n")
    loaded = load(text)
    assert loaded.unset == {}


@pytest.mark.parametrize("flag,kwargs,message", [
    ("-v", {"var": ["novalue"]}, "invalid variable pair"),
    ("-v", {"var": ["a..b=1"]}, "empty field"),
    ("-v", {"var": ["src:a=1"]}, "a var with a source"),
    ("-y", {"yaml_var": ["a=[1"]}, "-y 'a=[1'"),
    ("-l", {"load_vars_from": [("v.yml", "- 1\n")]}, "expected a mapping of var names"),
])
def test_bad_flags(flag, kwargs, message):
    with pytest.raises(VarFlagError) as info:
        StaticVars.from_flags(**kwargs)
    assert message in str(info.value) and flag in str(info.value)


def test_references_parse_as_concourse_does():
    assert parse_reference('src:"a.b".c') == parse_reference('src:"a.b".c')
    ref = parse_reference('src:"a.b".c')
    assert (ref.source, ref.path, ref.fields) == ("src", "a.b", ("c",))
    assert str(ref) == 'src:"a.b".c'
    with pytest.raises(ValueError, match="empty field"):
        parse_reference("a.")
    with pytest.raises(ValueError, match="source must not be quoted"):
        parse_reference('"s":a')
