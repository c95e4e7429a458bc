"""The pipeline schema and its cross checks: every invalid config is refused naming each problem at
its line and field (airside.pipeline.loader, .models, .semantics)."""

from __future__ import annotations

import textwrap

import pytest

from airside.pipeline import PipelineConfigError, load_pipeline_config

VALID = """\
resources:
- name: repo
  type: git
  source: {uri: https://example.com/repo.git}
- name: img
  type: registry-image
  source: {repository: example/img}
jobs:
- name: build
  plan:
  - get: repo
    trigger: true
  - task: unit
    config:
      platform: linux
      run: {path: "true"}
  - put: img
- name: deploy
  plan:
  - get: repo
    passed: [build]
"""


def problems(text: str) -> list[tuple[int | None, str, str]]:
    with pytest.raises(PipelineConfigError) as info:
        load_pipeline_config(textwrap.dedent(text), "p.yml", known_types=frozenset())  # as web, no worker types
    assert all(p.filename == "p.yml" for p in info.value.problems)
    return [(p.line, p.field, p.message) for p in info.value.problems]


def test_the_valid_config_is_valid():
    loaded = load_pipeline_config(VALID, "p.yml")
    assert [j.name for j in loaded.config.jobs or []] == ["build", "deploy"]
    assert loaded.warnings == [] and loaded.unset == {}


def swap(old: str, new: str) -> str:
    assert old in VALID, old
    return VALID.replace(old, new, 1)


# (name, config text, [(line, field, a fragment of the message)]) — each row one rule.
CASES = [
    ("undefined resource in a get",
     swap("  - get: repo\n    trigger", "  - get: nope\n    trigger"),
     [(11, "jobs[0].plan[0].get", "unknown resource 'nope' (defined: repo, img)"),
      (21, "jobs[1].plan[0].passed[0]", "job 'build' does not get or put resource 'repo'")]),
    ("undefined resource in a put (through resource:)",
     swap("  - put: img\n", "  - put: img\n    resource: gone\n"),
     [(18, "jobs[0].plan[2].resource", "unknown resource 'gone'"),
      (5, "resources[1].name", "resource 'img' is not used")]),
    ("duplicate job",
     swap("- name: deploy\n", "- name: build\n"),
     [(18, "jobs[1].name", "duplicate job name 'build' (also jobs[0] at line 9)"),
      (9, "jobs[0].name", "the pipeline has a cycle through passed: build <- build")]),
    ("duplicate resource",
     swap("- name: img\n", "- name: repo\n"),
     [(5, "resources[1].name", "duplicate resource name 'repo' (also resources[0] at line 2)"),
      (17, "jobs[0].plan[2].put", "unknown resource 'img'")]),
    ("duplicate group",
     VALID + "groups:\n- name: all\n  jobs: ['*']\n- name: all\n  jobs: [build]\n",
     [(25, "groups[1].name", "duplicate group name 'all'")]),
    ("unknown step key",
     swap("  - put: img\n", "  - putt: img\n"),
     # (the cross checks run once the schema holds: 'img' is not reported unused)
     [(17, "jobs[0].plan[2]", "unknown step: no step type among its keys (putt)")]),
    ("ambiguous step",
     swap("  - put: img\n", "  - put: img\n    get: repo\n"),
     [(17, "jobs[0].plan[2]", "ambiguous step: it has 2 step types (put, get)")]),
    ("only modifiers, no step",
     swap("  - put: img\n", "  - put: img\n  - timeout: 1h\n    attempts: 2\n"),
     [(18, "jobs[0].plan[3]", "no step type: timeout, attempts modify a step")]),
    ("unknown key in a resource",
     swap("  type: git\n", "  type: git\n  colour: red\n"),
     [(4, "resources[0].colour", "unknown key 'colour' (expected one of: name, old_name, type, source")]),
    ("unknown key in a get step",
     swap("    trigger: true\n", "    triger: true\n"),
     [(12, "jobs[0].plan[0].triger", "unknown key 'triger' for a get step (expected one of:")]),
    ("unknown key in a job",
     swap("- name: deploy\n", "- name: deploy\n  seriel: true\n"),
     [(19, "jobs[1].seriel", "unknown key 'seriel'")]),
    ("passed names a job that does not exist",
     swap("passed: [build]", "passed: [biuld]"),
     [(21, "jobs[1].plan[0].passed[0]", "no job matches 'biuld'")]),
    ("passed names a job that does not get the resource",
     swap("  - get: repo\n    trigger: true\n", ""),
     [(19, "jobs[1].plan[0].passed[0]", "job 'build' does not get or put resource 'repo'")]),
    ("a group names an unknown job",
     VALID + "groups:\n- name: all\n  jobs: [build, deploy, nothing]\n",
     [(24, "groups[0].jobs[2]", "no job matches 'nothing' (group 'all')")]),
    ("a group names an unknown resource",
     VALID + "groups:\n- name: all\n  jobs: ['*']\n  resources: [repo, nope]\n",
     [(25, "groups[0].resources[1]", "group 'all' has unknown resource 'nope'")]),
    ("a job in no group",
     VALID + "groups:\n- name: some\n  jobs: [build]\n",
     [(18, "jobs[1].name", "job 'deploy' belongs to no group")]),
    ("bad ((var)): an empty field",
     swap("source: {uri: https://example.com/repo.git}", "source: {uri: ((repo..uri))}"),
     [(4, "resources[0].source.uri", "bad ((var)) syntax: invalid var 'repo..uri': empty field")]),
    ("bad ((var)): a character no var has",
     swap("source: {uri: https://example.com/repo.git}", "source: {uri: '((repo!))'}"),
     [(4, "resources[0].source.uri", "bad ((var)) syntax '((repo!))': character '!'")]),
    ("unknown resource type",
     swap("  type: git\n", "  type: gti\n"),
     [(3, "resources[0].type", "unknown resource type 'gti' (expected one of:")]),
    ("a resource type whose base is unknown",
     VALID + "resource_types:\n- name: custom\n  type: custom\n",
     [(24, "resource_types[0].type", "unknown resource type 'custom'")]),
    ("task with both file and config",
     swap("  - task: unit\n", "  - task: unit\n    file: ci/unit.yml\n"),
     [(14, "jobs[0].plan[1].file", "must specify one of `file:` or `config:`, not both")]),
    ("task with neither",
     swap("    config:\n      platform: linux\n      run: {path: \"true\"}\n", "    image: x\n"),
     [(13, "jobs[0].plan[1].task", "must specify either `file:` or `config:`")]),
    ("inline task config checked by airside.task, at its line",
     swap("      run: {path: \"true\"}\n", "      run: {path: \"true\", dirr: x}\n"),
     [(16, "jobs[0].plan[1].config.run.dirr", "unknown key 'dirr'")]),
    ("attempts must be greater than 0",
     swap("  - put: img\n", "  - put: img\n    attempts: 0\n"),
     [(18, "jobs[0].plan[2].attempts", "expected an integer greater than 0, got 0")]),
    ("timeout is a Go duration",
     swap("  - put: img\n", "  - put: img\n    timeout: 5 minutes\n"),
     [(18, "jobs[0].plan[2].timeout", "invalid duration '5 minutes'")]),
    ("a type error names what was expected",
     swap("    trigger: true\n", "    trigger: 'yes'\n"),
     [(12, "jobs[0].plan[0].trigger", "expected true or false, got string 'yes'")]),
    ("an unused resource",
     swap("  - put: img\n", ""),
     [(5, "resources[1].name", "resource 'img' is not used by any job")]),
    ("a cycle through passed",
     swap("  - get: repo\n    trigger: true\n", "  - get: repo\n    passed: [deploy]\n"),
     [(9, "jobs[0].name", "the pipeline has a cycle through passed")]),
    ("a repeated get name in a job",
     swap("  - put: img\n", "  - put: img\n  - get: repo\n"),
     [(18, "jobs[0].plan[3].get", "repeated name 'repo'")]),
    ("in_parallel as a list: errors at the steps as written",
     swap("  - put: img\n", "  - in_parallel:\n    - put: img\n      no_gett: true\n"),
     [(19, "jobs[0].plan[2].in_parallel[0].no_gett", "unknown key 'no_gett' for a put step")]),
    ("in_parallel as a mapping",
     swap("  - put: img\n", "  - in_parallel:\n      limit: -1\n      steps:\n      - put: img\n"),
     [(18, "jobs[0].plan[2].in_parallel.limit", "expected an integer of 0 or more, got -1")]),
    ("fail_fast on a step goes with across",
     swap("  - put: img\n", "  - put: img\n    fail_fast: true\n"),
     [(18, "jobs[0].plan[2].fail_fast", "fail_fast on a step goes with across")]),
    ("across: max_in_flight",
     swap("  - put: img\n", "  - put: img\n    across:\n    - {var: a, values: [2], max_in_flight: 0}\n"),
     [(19, "jobs[0].plan[2].across[0].max_in_flight", "expected 'all' or an integer greater than 0, got 0")]),
    ("across: a repeated var",
     swap("  - put: img\n", "  - put: img\n    across:\n    - {var: a, values: [1]}\n"
                            "    - {var: a, values: [2]}\n"),
     [(20, "jobs[0].plan[2].across[1].var", "repeated var name 'a'")]),
    ("a duplicate YAML key",
     swap("    trigger: true\n", "    trigger: true\n    trigger: false\n"),
     [(13, "jobs[0].plan[0].trigger", "duplicate key 'trigger' (first at line 12)")]),
    ("no jobs",
     "resources: []\njobs: []\n",
     [(2, "jobs", "a pipeline must contain at least one job")]),
    ("build_log_retention",
     swap("- name: deploy\n", "- name: deploy\n  build_log_retention: {builds: 2, minimum_succeeded_builds: 3}\n"),
     [(19, "jobs[1].build_log_retention.minimum_succeeded_builds", "3 is greater than builds (2)")]),
    ("var_sources type",
     VALID + "var_sources:\n- name: creds\n  type: lastpass\n",
     [(24, "var_sources[0].type", "expected 'vault', 'dummy', 'ssm', 'secretsmanager' or 'idtoken'")]),
    ("display background_image scheme",
     VALID + "display:\n  background_image: ftp://x/y.png\n",
     [(23, "display.background_image", "scheme must be either http, https or relative")]),
    ("prototypes are not supported",
     VALID + "prototypes: []\n",
     [(22, "prototypes", "prototypes are not supported")]),
]


@pytest.mark.parametrize("text,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_invalid_configs_are_refused_naming_each_problem(text, expected):
    got = problems(text)
    for line, field, fragment in expected:
        assert any(g[0] == line and g[1] == field and fragment in g[2] for g in got), (
            f"expected {line}: {field}: ...{fragment}... among:\n" + "\n".join(map(str, got)))
    assert len(got) == len(expected), "\n".join(map(str, got))


def test_every_problem_at_once():
    text = (swap("  - get: repo\n    trigger", "  - get: nope\n    trigger")
            .replace("- name: deploy\n", "- name: build\n")
            .replace("passed: [build]", "passed: [((x..y))]"))
    got = problems(text)
    assert [(g[0], g[1]) for g in got] == [
        (11, "jobs[0].plan[0].get"),       # unknown resource
        (18, "jobs[1].name"),              # duplicate job
        (21, "jobs[1].plan[0].passed[0]"),  # bad var (and so no job matches it)
        (21, "jobs[1].plan[0].passed[0]"),
    ], got


def test_str_names_file_line_and_field():
    with pytest.raises(PipelineConfigError) as info:
        load_pipeline_config(swap("  - get: repo\n    trigger", "  - get: nope\n    trigger"), "ci/p.yml")
    assert "ci/p.yml:11: jobs[0].plan[0].get: unknown resource 'nope'" in str(info.value)


def test_warnings_do_not_refuse():
    text = ("meta:\n  x: &x 1\n" + swap("- name: deploy\n", "- name: deploy\n  serial: true\n  max_in_flight: 3\n")
            .replace("- name: img\n", "- name: Img\n").replace("  - put: img\n", "  - put: Img\n"))
    loaded = load_pipeline_config(text, "p.yml")
    got = [(w.line, w.field, w.message) for w in loaded.warnings]
    assert got[0][:2] == (1, "meta") and "unknown top-level key 'meta' is ignored" in got[0][2]
    assert any(w[1] == "resources[1].name" and "must start with a lowercase letter" in w[2] for w in got), got
    assert any(w[1] == "jobs[1].max_in_flight" and "max_in_flight is ignored" in w[2] for w in got), got


def test_every_step_type_and_modifier_parses():
    text = textwrap.dedent("""\
        resources:
        - {name: repo, type: git, source: {uri: x}, check_every: never, icon: github, public: true,
           webhook_token: t, old_name: r, version: {ref: abc}, tags: [a], expose_build_created_by: true}
        resource_types:
        - {name: my-type, type: registry-image, source: {repository: x}, privileged: true, params: {}, check_every: 1m,
           tags: [a], defaults: {x: 1}}
        - {name: other, type: my-type, source: {}}
        - {name: git, type: git, source: {}}
        var_sources:
        - {name: vault, type: vault, config: {url: https://vault}}
        display: {background_image: /x.png, background_filter: opacity(30%)}
        jobs:
        - name: j
          old_name: i
          serial_groups: [a]
          public: true
          disable_manual_trigger: true
          interruptible: true
          build_log_retention: {days: 3, builds: 5, minimum_succeeded_builds: 1}
          on_success: {put: repo}
          on_failure: {do: []}
          on_error: {try: {load_var: x, file: repo/x, format: json, reveal: true}}
          on_abort: {in_parallel: {steps: [], limit: 2, fail_fast: true}}
          ensure: {set_pipeline: self, file: repo/p.yml, vars: {a: 1}, var_files: [v.yml], team: t, instance_vars: {b: 2}}
          plan:
          - get: repo
            version: every
            params: {depth: 1}
            tags: [a]
            timeout: 1h30m
            attempts: 2
          - across:
            - {var: v, values: [1, 2], max_in_flight: all}
            fail_fast: true
            task: t
            file: repo/t.yml
            image: img
            params: {A: 1}
            vars: {b: 2}
            input_mapping: {a: repo}
            output_mapping: {o: out}
            privileged: true
            tags: [a]
            container_limits: {cpu: 512, memory: 1GB}
          - put: repo
            inputs: detect
            get_params: {a: 1}
            no_get: true
            on_success: {get: repo-after, resource: repo}
        """)
    loaded = load_pipeline_config(text, "p.yml")
    job = (loaded.config.jobs or [])[0]
    assert [s.kind for s in job.plan] == ["get", "task", "put"]
    assert loaded.unset == {} and loaded.later == {} and loaded.warnings == []


def test_a_type_a_worker_offers_is_known_and_without_workers_unknown_types_warn() -> None:
    text = swap("  type: git\n", "  type: counter\n")
    assert load_pipeline_config(text, "p.yml", known_types=frozenset({"counter"})).warnings == []
    loaded = load_pipeline_config(text, "p.yml")
    assert any("unknown resource type 'counter'" in str(w) and "worker" in str(w) for w in loaded.warnings)
    with pytest.raises(PipelineConfigError, match="no worker offers it"):
        load_pipeline_config(text, "p.yml", known_types=frozenset({"other"}))
