"""airside.task.config: the Concourse task schema, its YAML loader and its error messages."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from airside.task.config import (
    DEFAULT_WORK_DIR,
    TaskConfig,
    TaskConfigError,
    load_task_config,
    param_to_env,
    parse_memory,
    parse_task_config,
)

FILES = Path(__file__).parent / "task_files"


def load(name: str) -> TaskConfig:
    return load_task_config((FILES / name).read_text(), Path(name).name)


def problems(name: str) -> list[str]:
    with pytest.raises(TaskConfigError) as info:
        load(name)
    lines = [str(p) for p in info.value.problems]
    assert str(info.value).splitlines()[1:] == [f"  {line}" for line in lines]
    return lines


# --------------------------------------------------------------------------- valid files


def test_full_task_file():
    c = load("full.yml")
    assert c.platform == "linux"
    assert c.image_resource is not None
    assert c.image_resource.type == "registry-image"
    assert (c.image_resource.repository, c.image_resource.tag) == ("golang", "1.22")
    assert c.image_resource.reference == "golang@sha256:0123456789abcdef"
    assert [(i.name, i.path, i.optional) for i in c.inputs] == [
        ("project-src", "project-src", False),
        ("version", "meta/version", False),
        ("release-notes", "release-notes", True),
    ]
    assert [(o.name, o.path) for o in c.outputs] == [("built-project", "built-project"), ("docs", "out/docs")]
    assert [x.path for x in c.caches] == ["project-src/node_modules", ".gocache"]
    assert c.run.path == "project-src/ci/build"
    assert c.run.args == ["--release", "Hello, world!"]
    assert (c.run.dir, c.run.user) == ("project-src", "builder")
    assert c.container_limits is not None
    assert (c.container_limits.cpu, c.container_limits.memory) == (512, 1 << 30)


def test_full_params_env_follows_concourse():
    env = load("full.yml").params_env()
    assert env == {
        "GOFLAGS": "-mod=vendor",
        "CGO_ENABLED": "0",
        "VERBOSE": "true",
        "SECRET_TOKEN": "",
        "RATIO": "1.5",
        "TAGS": '["linux","amd64"]',
        "EXTRA": '{"a":1,"b":2}',
    }
    assert list(env) == ["GOFLAGS", "CGO_ENABLED", "VERBOSE", "SECRET_TOKEN", "RATIO", "TAGS", "EXTRA"]
    assert load("full.yml").env_list()[0] == "GOFLAGS=-mod=vendor"


def test_full_path_layout():
    c = load("full.yml")
    w = DEFAULT_WORK_DIR
    assert w == PurePosixPath("/tmp/build/work")
    assert c.input_paths() == {
        "project-src": w / "project-src",
        "version": w / "meta/version",
        "release-notes": w / "release-notes",
    }
    assert c.output_paths("/w") == {"built-project": PurePosixPath("/w/built-project"),
                                    "docs": PurePosixPath("/w/out/docs")}
    assert c.cache_paths("/w") == [PurePosixPath("/w/project-src/node_modules"), PurePosixPath("/w/.gocache")]
    assert c.working_dir() == w / "project-src"
    assert c.working_dir("/w") == PurePosixPath("/w/project-src")


def test_null_valued_params_and_null_sections():
    c = load("null_params.yml")
    assert c.params == {
        "AWS_ACCESS_KEY_ID": None,
        "AWS_SECRET_ACCESS_KEY": None,
        "AWS_REGION": None,
        "BUCKET": "my-bucket",
        "DEPLOY_DATE": "2024-01-01",  # no timestamp typing, as with Go's YAML
        "ENABLE": True,  # YAML 1.1 `yes`
    }
    env = c.params_env()
    assert env["AWS_ACCESS_KEY_ID"] == env["AWS_SECRET_ACCESS_KEY"] == env["AWS_REGION"] == ""
    assert env["ENABLE"] == "true"
    assert c.inputs == []
    assert c.rootfs_uri is None
    assert c.image_resource is not None and c.image_resource.type == "docker-image"
    assert c.image_resource.tag == "latest"
    assert c.run.args[1] == 'echo "deploying to $BUCKET"\nenv | sort\n'
    assert c.working_dir() == DEFAULT_WORK_DIR


def test_flow_style_maps():
    c = load("flow_style.yml")
    assert c.image_resource is not None and c.image_resource.repository == "busybox"
    assert c.input_paths("/w") == {"repo": PurePosixPath("/w/repo"), "ci": PurePosixPath("/w/ci-tasks")}
    assert c.inputs[1].optional is True
    assert c.params_env() == {"FOO": "bar", "COUNT": "3", "EMPTY": ""}
    assert c.run.path == "/bin/sh"
    assert c.container_limits is not None and c.container_limits.memory == 512 * 1024 * 1024
    assert c.container_limits.cpu is None


def test_anchors_and_merge_keys():
    c = load("anchors.yml")
    assert c.image_resource is not None and c.image_resource.tag == "musl"
    assert c.params_env() == {"INHERITED": "from-anchor", "OVERRIDDEN": "new"}


def test_merge_key_does_not_excuse_a_repeated_own_key():
    text = "platform: linux\nrun:\n  <<: {path: sh}\n  args: [a]\n  args: [b]\n"
    with pytest.raises(TaskConfigError) as info:
        load_task_config(text)
    assert [str(p) for p in info.value.problems] == ["task.yml:5: run.args: duplicate key 'args' (first at line 4)"]


def test_aliased_mapping_with_merge_is_read_twice():
    text = (
        "platform: linux\n"
        "inputs:\n"
        "- &i {<<: {name: a, optional: true}, name: b}\n"
        "run: {path: sh}\n"
        "outputs:\n"
        "- name: out\n"
        "params:\n"
        "  X: &x {<<: {k: 1}, k: 2}\n"
        "  Y: *x\n"
    )
    c = load_task_config(text)
    assert (c.inputs[0].name, c.inputs[0].optional) == ("b", True)
    assert c.params_env() == {"X": '{"k":2}', "Y": '{"k":2}'}


def test_output_may_share_an_input_path():
    c = load("same_path_output.yml")
    assert c.output_paths()["repo-committed"] == c.input_paths()["repo"]
    assert c.outputs_sharing_inputs() == {"repo-committed": "repo"}
    assert c.working_dir("/w") == PurePosixPath("/w/repo")


def test_no_image_is_allowed_but_the_runner_gets_a_clear_error():
    c = load("no_image.yml")
    c.require_image(step_image=True)  # the step's image: supplies one
    with pytest.raises(TaskConfigError) as info:
        c.require_image()
    msg = str(info.value)
    assert "no_image.yml: image_resource: the task has no image" in msg
    assert "rootfs_uri" in msg and "image:" in msg
    load("rootfs.yml").require_image()
    load("full.yml").require_image()


def test_rootfs_uri_and_zero_limits():
    c = load("rootfs.yml")
    assert c.rootfs_uri == "/var/lib/airside/rootfs/busybox"
    assert c.image_resource is None
    assert c.container_limits is not None
    assert (c.container_limits.cpu, c.container_limits.memory) == (0, 0)


def test_round_trip_through_json_dump():
    c = load("full.yml")
    again = parse_task_config(c.model_dump(mode="json"))
    assert again.model_dump() == c.model_dump()
    assert again.params_env() == c.params_env()


def test_paths_are_normalised():
    c = parse_task_config({
        "platform": "linux",
        "inputs": [{"name": "a", "path": "./x//y/"}],
        "run": {"path": "sh", "dir": "./x/"},
    })
    assert c.inputs[0].path == "x/y"
    assert c.run.dir == "x"


# --------------------------------------------------------------------------- malformed files


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("wrong_type.yml", [
            "wrong_type.yml:7: inputs[0].optional: expected true or false, got string 'maybe'",
            "wrong_type.yml:10: run.args: expected a list of strings, got string '-c'",
        ]),
        ("unknown_key_deep.yml", [
            "unknown_key_deep.yml:8: inputs[1].pathh: unknown key 'pathh' (expected one of: name, path, optional)",
            "unknown_key_deep.yml:11: container_limit: unknown key 'container_limit' (expected one of: "
            "platform, image_resource, rootfs_uri, inputs, outputs, caches, params, run, container_limits)",
        ]),
        ("duplicate_inputs.yml", [
            "duplicate_inputs.yml:10: outputs[1].name: duplicate output name 'out' (also outputs[0])",
        ]),
        ("absolute_path.yml", [
            "absolute_path.yml:8: outputs[0].path: path '../dist' contains '..' (expected a path without '..')",
        ]),
        ("bad_memory.yml", [
            "bad_memory.yml:6: container_limits.cpu: expected an integer number of CPU shares, got number 1.5",
            "bad_memory.yml:7: container_limits.memory: cannot parse memory limit '2 gigs' (expected bytes, "
            "or a number with a unit KB, MB or GB such as '512MB' or '1GB')",
        ]),
        ("same_path.yml", [
            "same_path.yml:7: inputs[1].path: path 'shared' is already used by inputs[0]",
            "same_path.yml:11: caches[0].path: path 'out' is already used by outputs[0]",
        ]),
        ("bad_image_source.yml", [
            "bad_image_source.yml:4: image_resource.source.repository: field required (expected a string)",
        ]),
        ("bad_names.yml", [
            "bad_names.yml:4: inputs[0].name: invalid name 'my repo' "
            "(expected letters, digits, '-', '_' or '.', starting with a letter or digit)",
            "bad_names.yml:5: inputs[1].name: invalid name '-dash-first' "
            "(expected letters, digits, '-', '_' or '.', starting with a letter or digit)",
            "bad_names.yml:6: inputs[2].name: expected a non-empty name",
            "bad_names.yml:7: inputs[3].name: field required (expected a name such as my-repo)",
        ]),
        ("duplicate_key.yml", [
            "duplicate_key.yml:5: run.path: duplicate key 'path' (first at line 4)",
        ]),
        ("not_a_mapping.yml", [
            "not_a_mapping.yml:1: expected a mapping with platform and run at the top level, got a list",
        ]),
        ("multi_doc.yml", [
            "multi_doc.yml:4: more than one YAML document (expected exactly one task config)",
        ]),
    ],
)
def test_malformed_files_name_field_line_and_expectation(name, expected):
    assert problems(f"bad/{name}") == expected


def test_bad_yaml_gives_line_and_column():
    [msg] = problems("bad/bad_yaml.yml")
    assert msg.startswith("bad_yaml.yml:6:4: YAML syntax error: expected <block end>")
    assert "line 3" in msg


def test_unclosed_flow_sequence():
    with pytest.raises(TaskConfigError) as info:
        load_task_config("platform: linux\nrun:\n  path: sh\n  args: [a, b\n")
    [p] = info.value.problems
    assert (p.line, p.column) == (5, 1)
    assert "while parsing a flow sequence at line 4" in p.message


def test_every_problem_is_reported_at_once():
    text = (
        "image_resource:\n"            # 1
        "  type: registry-image\n"     # 2
        "  source: {tag: 3.9}\n"       # 3  repository missing, tag unquoted
        "run:\n"                       # 4
        "  args: [1]\n"                # 5
    )
    with pytest.raises(TaskConfigError) as info:
        load_task_config(text, "ci/task.yml")
    got = [str(p) for p in info.value.problems]
    assert got == [
        "ci/task.yml:1: platform: field required (expected a string such as linux)",
        "ci/task.yml:3: image_resource.source.repository: field required (expected a string)",
        "ci/task.yml:5: run.args[0]: expected a string, got integer 1",
    ]
    assert str(info.value).startswith("invalid task config ci/task.yml (3 problems):")


def test_unquoted_numeric_tag_is_explained():
    text = "platform: linux\nimage_resource:\n  type: registry-image\n  source: {repository: python, tag: 3.10}\nrun: {path: sh}\n"
    with pytest.raises(TaskConfigError) as info:
        load_task_config(text)
    assert [str(p) for p in info.value.problems] == [
        "task.yml:4: image_resource.source.tag: expected a string (quote it: tag: '3.10'), got number 3.1"
    ]


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("platform: 1\nrun: {path: sh}\n", "task.yml:1: platform: expected a string such as linux, got integer 1"),
        ("platform: linux\nrun: sh\n", "task.yml:2: run: expected a mapping with path, args, dir, user, got string 'sh'"),
        ("platform: linux\nrun: {path: sh}\ninputs: {name: a}\n",
         "task.yml:3: inputs: expected a list of inputs, got a mapping"),
        ("platform: linux\nrun: {path: sh, user: 0}\n", "task.yml:2: run.user: expected a string, got integer 0"),
        ("platform: linux\nrun: {path: sh, dir: ../up}\n",
         "task.yml:2: run.dir: path '../up' contains '..' (expected a path inside the working directory)"),
        ("platform: linux\nrun: {path: ''}\n", "task.yml:2: run.path: expected a string, got an empty string"),
        ("platform: linux\nrun: {path: sh}\nparams:\n  A=B: c\n",
         "task.yml:4: params[\"A=B\"]: invalid environment variable name 'A=B' (contains '=' or NUL)"),
        ("platform: linux\nrun: {path: sh}\nparams:\n  N: .nan\n",
         "task.yml:4: params.N: nan cannot be passed as a param (expected a finite number)"),
        ("platform: linux\nrun: {path: sh}\ncontainer_limits: {memory: true}\n",
         "task.yml:3: container_limits.memory: expected bytes as an integer or a string like '512MB', got a boolean"),
        ("platform: linux\nrun: {path: sh}\ncontainer_limits: {cpu: '2'}\n",
         "task.yml:3: container_limits.cpu: expected an integer number of CPU shares, got string '2'"),
        ("platform: linux\nrun: {path: sh}\ncaches:\n- path: /\n",
         "task.yml:4: caches[0].path: path '/' is the container's root (expected a directory under it)"),
        ("platform: linux\nrun: {path: sh}\ncaches:\n- {path: c, ttl: 500ms}\n",
         "task.yml:4: caches[0].ttl: cache ttl must be at least 1s, got '500ms'"),
        ("platform: linux\nrun: {path: sh}\ncaches:\n- {path: c, ttl: 1 day}\n",
         "task.yml:4: caches[0].ttl: invalid duration '1 day' (expected a number with a unit, such as '1h' or '30m')"),
        ("platform: linux\nrun: {path: sh}\nimage_resource: {type: '', source: {}}\n",
         "task.yml:3: image_resource.type: expected a resource type such as registry-image, got an empty string"),
        ("platform: linux\nrun: {path: sh}\ninputs:\n- {name: a, path: .}\n- {name: b, path: /tmp/build/work}\n",
         "task.yml:5: inputs[1].path: path '/tmp/build/work' is already used by inputs[0]"),
        ("platform: linux\nrun: {path: sh}\nimage_resource:\n  type: registry-image\n  source: {repository: x}\n"
         "  version: {digest: 5}\n",
         "task.yml:6: image_resource.version.digest: expected a string, got integer 5"),
        ("", "task.yml:1: empty document (expected a mapping with platform and run)"),
    ],
)
def test_single_problems(snippet, expected):
    with pytest.raises(TaskConfigError) as info:
        load_task_config(snippet)
    assert [str(p) for p in info.value.problems] == [expected]


def test_parse_task_config_without_yaml_has_no_lines():
    with pytest.raises(TaskConfigError) as info:
        parse_task_config({"platform": "linux", "run": {"path": 1}}, "api")
    assert [str(p) for p in info.value.problems] == ["api: run.path: expected a string, got integer 1"]


# --------------------------------------------------------------------------- units


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1024, 1024), ("1024", 1024), ("1024B", 1024), ("1KB", 1024), ("1kb", 1024), ("512MB", 512 << 20),
        ("1GB", 1 << 30), ("1G", 1 << 30), ("1GiB", 1 << 30), ("2Mi", 2 << 20), ("0", 0),
    ],
)
def test_parse_memory(value, expected):
    assert parse_memory(value) == expected


@pytest.mark.parametrize("value", ["1TB", "1.5GB", "-1", "GB", "", "1 GB x", -1, 1.5, True])
def test_parse_memory_rejects(value):
    with pytest.raises(ValueError):
        parse_memory(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, ""), ("x", "x"), (0, "0"), (-3, "-3"), (1.0, "1"), (1.5, "1.5"), (0.1, "0.1"),
        (1e16, "10000000000000000"), (1e21, "1e+21"), (1e-7, "1e-7"), (True, "true"), (False, "false"),
        ([1, None, "a"], '[1,null,"a"]'), ({"b": {"d": 1, "c": 2.0}, "a": []}, '{"a":[],"b":{"c":2,"d":1}}'),
        ({"html": "<a&b>"}, '{"html":"\\u003ca\\u0026b\\u003e"}'), ("<a&b>", "<a&b>"),
    ],
)
def test_param_to_env(value, expected):
    assert param_to_env(value) == expected


# --------------------------------------------------------------------------- issue 16: what real files need


def test_any_image_resource_type_parses_and_is_refused_only_when_run():
    # Concourse's hello-world uses `mock`; a custom type is defined by the pipeline. Neither needs
    # source.repository, and neither is an error until something tries to fetch the image.
    c = load("other_image_type.yml")
    assert c.image_resource is not None and c.image_resource.type == "git"
    reason = c.image_resource.unsupported()
    assert reason is not None and "'git' is not supported yet" in reason and "registry-image" in reason
    with pytest.raises(ValueError, match="'git' is not supported yet"):
        _ = c.image_resource.reference
    mock = load_task_config("platform: linux\nimage_resource: {type: mock, source: {mirror_self: true}}\n"
                            "run: {path: echo}\n")
    assert mock.image_resource is not None and mock.image_resource.unsupported() is not None
    reg = load_task_config("platform: linux\nimage_resource: {type: registry-image, source: {repository: a}}\n"
                           "run: {path: echo}\n")
    assert reg.image_resource is not None and reg.image_resource.unsupported() is None


def test_input_at_the_working_directory_itself():
    # oci-build-task's README: `inputs: [{name: context, path: .}]`
    c = load_task_config("platform: linux\nrootfs_uri: /r\ninputs:\n- {name: context, path: .}\n"
                         "outputs:\n- {name: image}\n- {name: same, path: ./}\nrun: {path: build}\n")
    assert [i.path for i in c.inputs] == ["."]
    assert c.input_paths() == {"context": DEFAULT_WORK_DIR}
    assert c.output_paths()["image"] == DEFAULT_WORK_DIR / "image"
    assert c.output_paths()["same"] == DEFAULT_WORK_DIR
    assert c.outputs_sharing_inputs() == {"same": "context"}


def test_absolute_artifact_paths_are_kept_absolute():
    # BOSH package builds write to /var/vcap/packages/<name>
    c = load_task_config(
        "platform: linux\nrootfs_uri: /r\ninputs:\n- {name: src, path: /go/src/x//y/}\n"
        "outputs:\n- {name: out, path: /var/vcap/packages/tar}\ncaches:\n- path: /root/.m2\nrun: {path: sh}\n")
    assert c.input_paths() == {"src": PurePosixPath("/go/src/x/y")}
    assert c.output_paths() == {"out": PurePosixPath("/var/vcap/packages/tar")}
    assert c.cache_paths() == [PurePosixPath("/root/.m2")]


def test_duplicate_input_names_warn_and_mount_once():
    c = load_task_config("platform: linux\nrootfs_uri: /r\ninputs:\n- name: ci\n- name: src\n- name: ci\n"
                         "run: {path: sh}\n", "t.yml")
    assert [i.name for i in c.inputs] == ["ci", "src"]
    assert [str(w) for w in c.warnings] == [
        "t.yml:6: inputs[2].name: duplicate input name 'ci' (also inputs[0]): this entry is ignored, "
        "the input is mounted once, at the same path"
    ]
    assert load_task_config("platform: linux\nrun: {path: sh}\n").warnings == []


def test_numeric_tag_hint_quotes_the_source_text():
    text = "platform: linux\nimage_resource:\n  type: registry-image\n  source: {repository: ruby, tag: 3.0}\nrun: {path: sh}\n"
    with pytest.raises(TaskConfigError) as info:
        load_task_config(text)
    assert [str(p) for p in info.value.problems] == [
        "task.yml:4: image_resource.source.tag: expected a string (quote it: tag: '3.0'), got number 3.0"
    ]


def test_concourse_8_keys_are_known():
    c = load_task_config(
        "platform: linux\nimage_resource:\n  name: golang-image\n  type: registry-image\n"
        "  source: {repository: golang}\n  tags: [gpu]\ncaches:\n- {path: .gocache, ttl: 24h}\n- path: other\n"
        "run: {path: go}\n")
    assert c.image_resource is not None
    assert (c.image_resource.name, c.image_resource.tags) == ("golang-image", ["gpu"])
    assert [x.ttl for x in c.caches] == ["24h", None]


def test_run_path_may_be_omitted_and_the_image_entrypoint_runs():
    c = load("no_run_path.yml")
    assert c.run.path is None and c.run.args == ["-c", "echo hi"]
    # Concourse 8's rule (atc/exec/task_step.go getOciEntrypoint): entrypoint[0], the rest of it, CMD, run.args
    assert c.command(["/bin/sh", "-e"], ["ignored?"]) == ("/bin/sh", ["-e", "ignored?", "-c", "echo hi"])
    assert c.command([], ["/bin/sh", "-x"]) == ("/bin/sh", ["-x", "-c", "echo hi"])
    with pytest.raises(ValueError, match="set run.path"):
        c.command([], [])
    bare = load_task_config("platform: linux\nrootfs_uri: /r\n")  # no run at all
    assert bare.run.path is None and bare.command(["/entry"]) == ("/entry", [])
    given = load_task_config("platform: linux\nrun: {path: sh, args: [a]}\n")
    assert given.command(["/entry"], ["x"]) == ("sh", ["a"])
