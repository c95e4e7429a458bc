"""Render the deployment model into a Helm chart, a docker-compose project or BOSH jobs.

    render("helm", overrides=None, out_dir=Path("chart"))

Overrides use the values document of `model.default_values()` (the chart's values.yaml) for every
target, and are checked against `model.values_schema()`: an unknown key or a wrong type is an error
naming the key. Output is deterministic: same model + overrides → same bytes.

Templates are Jinja with custom delimiters so Helm's `{{ }}` and ERB's `<% %>` pass through:
`[[ expr ]]`, `[% statement %]`, `[# comment #]`.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any

import jinja2
import yaml

import airside
from airside.config import env_text
from airside.packaging import model

TARGETS = {"helm": "chart", "compose": "docker", "bosh": "bosh"}
MANIFEST = ".airside-render"  # list of files a render wrote, so the next render removes stale ones
HEADER = "Rendered by `airside render` from src/airside/packaging; edit the templates there, then `make render`."


class OverrideError(ValueError):
    """Overrides that do not fit the values schema; the message names the key."""


# --- overrides ------------------------------------------------------------------------------------------
_JSON_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str, "integer": int, "number": (int, float), "boolean": bool, "object": dict, "array": list,
    "null": type(None)}


def _type_ok(value: Any, types: str | list[str]) -> bool:
    for t in [types] if isinstance(types, str) else types:
        py = _JSON_TYPES[t]
        if isinstance(value, bool) and t in ("integer", "number"):
            continue
        if isinstance(value, py):
            return True
    return False


def _check(value: Any, schema: dict[str, Any], key: str) -> None:
    if "anyOf" in schema:
        errors = []
        for option in schema["anyOf"]:
            try:
                _check(value, option, key)
                return
            except OverrideError as e:
                errors.append(str(e))
        raise OverrideError(errors[0])
    if "type" in schema and not _type_ok(value, schema["type"]):
        raise OverrideError(f"{key}: expected {schema['type']}, got {type(value).__name__} {value!r}")
    if "enum" in schema and value not in schema["enum"]:
        choices = ", ".join("null" if c is None else str(c) for c in schema["enum"])
        raise OverrideError(f"{key}: {value!r} is not one of: {choices}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        for k, ok in (("minimum", lambda b: value >= b), ("maximum", lambda b: value <= b),
                      ("exclusiveMinimum", lambda b: value > b), ("exclusiveMaximum", lambda b: value < b)):
            if k in schema and not ok(schema[k]):
                raise OverrideError(f"{key}: {value!r} violates {k} {schema[k]}")
    if isinstance(value, dict) and "properties" in schema:
        for k, v in value.items():
            sub = f"{key}.{k}" if key else str(k)
            if k not in schema["properties"]:
                if schema.get("additionalProperties", True) is False:
                    known = ", ".join(sorted(schema["properties"]))
                    raise OverrideError(f"unknown key {sub!r} (known here: {known})")
                continue
            _check(v, schema["properties"][k], sub)
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            _check(item, schema["items"], f"{key}[{i}]")


def validate_overrides(overrides: Mapping[str, Any]) -> None:
    if not isinstance(overrides, Mapping):
        raise OverrideError(f"overrides must be a mapping of values, got {type(overrides).__name__}")
    _check(dict(overrides), model.values_schema(), "")


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict) and out[k]:
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def values_with(overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    overrides = overrides or {}
    validate_overrides(overrides)
    return _merge(model.default_values(), overrides)


def load_overrides(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise OverrideError(f"{path}: not YAML: {e}") from None
    if not isinstance(data, dict):
        raise OverrideError(f"{path}: expected a mapping of values at the top level")
    return data


# --- documented values.yaml -----------------------------------------------------------------------------
def _scalar(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True) if value else ("{}" if isinstance(value, dict) else "[]")
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return text.removesuffix("\n...").removesuffix("...").strip() or "''"


def _wrap(text: str, prefix: str, width: int = 110) -> list[str]:
    words, lines, line = text.split(), [], ""
    for w in words:
        if line and len(prefix) + len(line) + 1 + len(w) > width:
            lines.append(prefix + line)
            line = w
        else:
            line = f"{line} {w}" if line else w
    if line:
        lines.append(prefix + line)
    return lines


def values_yaml(values: dict[str, Any]) -> str:
    """values.yaml with a comment line (or more) above every key."""
    out: list[str] = []

    def block(node: dict[str, Any], value: dict[str, Any], indent: int) -> None:
        pad = "  " * indent
        for k, spec in node.items():
            v = value.get(k)
            if isinstance(spec, model.Value):
                out.extend(_wrap(spec.doc, pad + "## "))
                if isinstance(v, dict) and v:
                    out.append(f"{pad}{k}:")
                    out.extend(pad + "  " + line for line in yaml.safe_dump(v, sort_keys=True).splitlines())
                else:
                    out.append(f"{pad}{k}: {_scalar(v)}")
            else:
                out.append(f"{pad}{k}:")
                block(spec, v or {}, indent + 1)
            if indent == 0:
                out.append("")

    block(model.workload_values(), values, 0)
    out += ["## Settings of each component, generated from airside's settings model (src/airside/config.py).",
            "## Keys are settings field names; the env var is AIRSIDE_<KEY>. null: not set, the binary's default",
            "## applies (shown in each comment). Secrets (tokens) live under `secrets:`, not here.",
            "airside:"]
    for comp, specs in model.settings_values().items():
        out.append(f"  ## `airside {comp}`")
        out.append(f"  {comp}:")
        managed = model.components()[comp].managed_settings
        for name, s in specs.items():
            unset = f"Unset: the chart sets {managed[name].describe()}." if name in managed else \
                f"Binary default: {s.default_text}."
            out.extend(_wrap(f"{s.description} Env {s.env}. {unset}", "    ## "))
            out.append(f"    {name}: {_scalar(values['airside'][comp].get(name))}")
    return "\n".join(out) + "\n"


# --- per-target context -----------------------------------------------------------------------------------


def _compose_env(values: dict[str, Any], comp: model.Component) -> dict[str, str]:
    """AIRSIDE_* env of a compose service: operator-set values, then what the deployment manages."""
    env: dict[str, str] = {}
    set_values = values["airside"].get(comp.name, {})
    web_port = model.effective_setting(values, "web", "bind_port")
    for s in comp.settings:
        if s.secret:
            env[s.env] = f"${{{s.env}:?run ./generate-secrets.sh first}}"
            continue
        if set_values.get(s.name) is not None:
            env[s.env] = env_text(s.name, set_values[s.name])
            continue
        m = comp.managed_settings.get(s.name)
        if m is None:
            continue
        if m.kind == "literal":
            env[s.env] = m.arg
        elif m.kind == "path":
            env[s.env] = f"{model.DATA_DIR}/{m.arg}"
        elif m.kind == "web_url":
            env[s.env] = f"{_compose_web_scheme(values)}://web:{web_port}"
        elif m.kind == "database_url":
            if values["postgresql"]["enabled"]:
                pg = values["postgresql"]
                env[s.env] = f"postgresql://{pg['username']}:${{POSTGRES_PASSWORD:?run docker/generate-secrets.sh " \
                             f"first}}@postgres:5432/{pg['database']}"
            else:
                env[s.env] = "${AIRSIDE_DATABASE_URL:-}"
        # instance_name / self_baggageclaim_url: containers get the binary default (the container's
        # hostname), which stays unique when the worker service is scaled.
    return env


def _compose_web_scheme(values: dict[str, Any]) -> str:
    """Compose: web serves HTTPS when the operator set its certificate (a host file, mounted as is); its
    certificate must then name `web`, the service workers call."""
    return "https" if values["airside"]["web"].get("tls_cert_file") else "http"


def _bosh_properties(comp: model.Component) -> list[dict[str, Any]]:
    """Spec properties of a BOSH job: every setting the role reads, named by field name."""
    props = []
    for s in comp.settings:
        m = comp.managed_settings.get(s.name)
        if m is not None and m.kind in model.CHART_ONLY_KINDS:
            m = None  # no cluster in a BOSH deployment: the binary default applies
        default: Any = None
        fallback = ""
        if m is not None and m.kind == "literal":
            default = m.arg.replace(model.DATA_DIR, model.BOSH_DATA_DIR)
        elif m is not None and m.kind == "path":
            default = f"{model.BOSH_DATA_DIR}/{m.arg}"
        elif m is not None:
            fallback = m.kind
        elif not s.secret and s.default not in (None, "", []):
            default = s.default
        desc = s.description + f" (env {s.env})"
        if s.file:
            desc = (f"Content of the file setting {s.name}: {s.description} The job writes it to "
                    f"{bosh_file_path(comp, s)} and points {s.env} there.")
        if m is not None and m.kind not in ("literal", "path"):
            desc += {"instance_name": "; unset: <deployment>-<instance group>-<index>",
                     "web_url": "; unset: from the airside-web link",
                     "self_baggageclaim_url": "; unset: http://<instance address>:<baggageclaim_bind_port>",
                     "database_url": "; the manifest sets it (bundled db or external-postgres ops file)"}.get(
                m.kind, "")
        props.append({"name": s.content_name, "env": s.env, "description": desc, "default": default,
                      "fallback": fallback, "encoding": s.encoding, "secret": s.secret or s.secret_file,
                      "file": s.file, "path": bosh_file_path(comp, s) if s.file else ""})
    return props


def bosh_file_path(comp: model.Component, s: model.SettingSpec) -> str:
    """Where a BOSH job writes the content of a file setting (its `{file}` template)."""
    return f"/var/vcap/jobs/{comp.name}/config/files/{s.content_name}"


def _helm_format(s: model.SettingSpec) -> str:
    """Helm pipeline turning the value `$v` into an env string (integers as integers: no 1e+06)."""
    if s.encoding == "comma":
        return '(join "," $v)'
    if s.encoding == "json":
        return "(toJson $v)"
    if s.type == "integer":
        return "(int64 $v | toString)"
    if s.type == "boolean":
        return "(ternary \"true\" \"false\" $v)"
    return "(toString $v)"


def _context(target: str, values: dict[str, Any]) -> dict[str, Any]:
    comps = model.components()
    return {
        "target": target,
        "values": values,
        "comps": comps,
        "airside_comps": [c for c in comps.values() if c.role],
        "secrets": model.secret_settings(),
        "settings": {s.name: s for s in model.settings()},
        "version": airside.__version__,
        "python_version": model.PYTHON_VERSION,
        "header": HEADER,
        "model": model,
        "values_yaml": values_yaml(values),
        "values_schema_json": json.dumps(model.values_schema(), indent=2, sort_keys=True) + "\n",
        "drain_margin": model.DRAIN_MARGIN_SECONDS,
        "drain_default": model.drain_timeout_default(),
        "grace_seconds": model.termination_grace_seconds(values),
        "shutdown_signal": values["worker"]["shutdownSignal"],
        "land_signal": model.LAND_SIGNAL,
        "retire_signal": model.RETIRE_SIGNAL,
        "compose_env": lambda c: _compose_env(values, c),
        "compose_web_tls": _compose_web_scheme(values) == "https",
        "bosh_properties": _bosh_properties,
        "tls_cert_property": next(s for s in model.settings() if s.name == "tls_cert_file").content_name,
        "helm_format": _helm_format,
        "env_text": env_text,
        "effective": lambda comp, name: model.effective_setting(values, comp, name),
        "tojson": lambda v: json.dumps(v),
        "yaml_scalar": _scalar,
    }


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("airside.packaging", "templates"),
        block_start_string="[%", block_end_string="%]",
        variable_start_string="[[", variable_end_string="]]",
        comment_start_string="[#", comment_end_string="#]",
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined, autoescape=False,
    )
    env.filters["tojson"] = lambda v: json.dumps(v)
    env.filters["scalar"] = _scalar
    return env


def _template_names(target: str) -> list[str]:
    root = resources.files("airside.packaging") / "templates" / target
    names: list[str] = []

    def walk(node: Any, prefix: PurePosixPath) -> None:
        for child in node.iterdir():
            rel = prefix / child.name
            if child.is_dir():
                walk(child, rel)
            elif not child.name.endswith((".pyc", "~", ".jinja")):
                names.append(str(rel))

    walk(root, PurePosixPath())
    return sorted(names)


def render_files(target: str, overrides: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Path (relative to the output dir) → content, for one target."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}: choose one of {', '.join(TARGETS)}")
    values = values_with(overrides)
    env = _environment()
    ctx = _context(target, values)
    files: dict[str, str] = {}
    for name in _template_names(target):
        for out_name, extra in _expansions(name, ctx):
            text = env.get_template(f"{target}/{name}").render({**ctx, **extra})
            if out_name.endswith("/.skip-if-empty") or (name.endswith(".j2") and not text.strip()):
                continue  # a template that renders nothing (its feature is off) writes no file
            files[out_name] = text
    return dict(sorted(files.items()))


def _expansions(name: str, ctx: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Output names of one template. `jobs/<job>/templates/{file}.erb.j2` renders once per file setting of
    that job's component (with `prop` set); anything else once."""
    out_name = name.removesuffix(".j2")
    if "{file}" not in name:
        return [(out_name, {})]
    comp = ctx["comps"][PurePosixPath(name).parts[1]]
    return [(out_name.replace("{file}", p["name"]), {"prop": p}) for p in _bosh_properties(comp) if p["file"]]


EXECUTABLE = ("drain", "ctl", ".sh")


def render(target: str, overrides: Mapping[str, Any] | None = None, out_dir: Path | None = None) -> dict[str, str]:
    """Render `target` into `out_dir` (default: its committed dir); returns the files written.

    Files a previous render wrote (listed in `.airside-render`) that this one does not are removed;
    nothing else in `out_dir` is touched."""
    files = render_files(target, overrides)
    out = Path(out_dir) if out_dir is not None else Path(TARGETS[target])
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / MANIFEST
    if manifest.exists():
        for old in manifest.read_text().split():
            if old not in files and (out / old).is_file():
                (out / old).unlink()
    for name, text in files.items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        mode = 0o755 if PurePosixPath(name).name.endswith(EXECUTABLE) and "templates/" not in name else 0o644
        if "/templates/" in name and name.endswith(("drain.erb", "ctl.erb")):
            mode = 0o644
        path.chmod(mode)
    manifest.write_text("".join(f"{n}\n" for n in files))
    return files
