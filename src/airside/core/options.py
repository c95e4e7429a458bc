"""Click options derived from the settings model: every command's flags come from here."""

from __future__ import annotations

import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from pydantic import SecretStr, ValidationError
from pydantic.fields import FieldInfo

from airside.config import Settings, env_name, fields_for


def _click_type(annotation: Any) -> tuple[Any, bool]:
    """Returns (click type, is_flag) for a settings annotation."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _click_type(args[0])
    if origin is typing.Literal:
        return click.Choice([str(a) for a in typing.get_args(annotation)]), False
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and len(args) == 1:
        return _click_type(args[0])
    if annotation is bool:
        return bool, True
    if annotation in (int, float):
        return annotation, False
    if annotation is Path:
        return click.Path(path_type=Path), False
    return str, False  # str, SecretStr, list[str] (comma separated)


def settings_options(*roles: str) -> Callable[[Callable], Callable]:
    fields: dict[str, FieldInfo] = {}
    for role in roles:
        fields.update(fields_for(role))

    def decorate(fn: Callable) -> Callable:
        for name, field in reversed(list(fields.items())):
            ctype, is_flag = _click_type(field.annotation)
            default = field.default
            shown = "(secret)" if isinstance(default, SecretStr) else default
            if isinstance(default, list):
                shown = ",".join(default)
            help_ = f"{field.description} [env {env_name(name)}; default {shown!s}]"
            opt = "--" + name.replace("_", "-")
            if is_flag:
                fn = click.option(f"{opt}/--no-{opt[2:]}", name, default=None, help=help_)(fn)
            else:
                fn = click.option(opt, name, type=ctype, default=None, help=help_)(fn)
        return fn

    return decorate


def load_settings(overrides: dict[str, Any]) -> Settings:
    given = {k: v for k, v in overrides.items() if v is not None and k in Settings.model_fields}
    try:
        return Settings(**given)
    except ValidationError as e:
        lines = []
        for x in e.errors():
            field = ".".join(str(p) for p in x["loc"])
            if not field:  # a rule across settings: the message names them
                lines.append(f"  {x['msg'].removeprefix('Value error, ')}")
                continue
            lines.append(f"  {field} (--{field.replace('_', '-')}, {env_name(field)}): {x['msg']}")
        raise click.UsageError("invalid settings:\n" + "\n".join(lines)) from None


