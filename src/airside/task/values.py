"""The task config's value rules, one validator per kind of field, and the annotated types the
schema (`airside.task.models`) declares its fields with:

- `Identifier`: input/output names, Concourse's charset (letters, digits, ``-``, ``_``, ``.``,
  starting with a letter or digit);
- `RelPath`: artifact and cache paths, relative to the work dir, split by the one path sanitizer
  (`airside.core.paths.clean_parts`: no ``..``, no NUL, not absolute) and normalised (``./a//b/`` →
  ``a/b``); ``.`` (the work dir itself) is refused;
- `RunDir`: ``run.dir``, absolute (kept as written, normalised by PurePosixPath) or a `RelPath`;
- `MemoryBytes` (`parse_memory`) and `CpuShares`: container limits, non-negative integers;
- `ParamKey` / `ParamValue`: environment names (non-empty, no ``=`` or NUL) and JSON-shaped values
  (no NaN/Inf).

Each validator raises ValueError with the message the loader shows after ``file:line: field:``.
"""

from __future__ import annotations

import math
import re
from pathlib import PurePosixPath
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator

from airside.core.paths import UnsafePath, clean_parts

from .errors import describe

__all__ = [
    "ArtifactPath",
    "CacheTTL",
    "CpuShares",
    "Identifier",
    "MemoryBytes",
    "ParamKey",
    "ParamValue",
    "RelPath",
    "RunDir",
    "parse_duration",
    "parse_memory",
]

_IDENTIFIER = re.compile(r"^[^\W_][\w.-]*\Z")


def _check_identifier(value: str) -> str:
    if not value:
        raise ValueError("expected a non-empty name")
    if not _IDENTIFIER.match(value):
        raise ValueError(
            f"invalid name {value!r} (expected letters, digits, '-', '_' or '.', "
            "starting with a letter or digit)"
        )
    return value


def _normalise_rel_path(value: str) -> str:
    """`value` as ``a/b`` (empty and ``.`` components dropped); ValueError if it is empty, refused
    by `clean_parts` (absolute, NUL, ``..``: in that order of precedence for the message), or
    names the work dir itself."""
    if not value:
        raise ValueError("expected a non-empty relative path")
    try:
        parts = clean_parts(value)
    except UnsafePath as e:
        if value.startswith("/"):
            raise ValueError(
                f"absolute path {value!r} (expected a path relative to the working directory)"
            ) from None
        if "\0" in value:
            raise ValueError("path contains a NUL byte") from None
        if ".." in value.split("/"):
            raise ValueError(
                f"path {value!r} contains '..' (expected a path inside the working directory)"
            ) from None
        raise ValueError(f"path {value!r}: {e} (expected a path inside the working directory)") from None
    if not parts:
        raise ValueError(f"path {value!r} is the working directory itself (expected a subdirectory)")
    return "/".join(parts)


def _normalise_artifact_path(value: str) -> str:
    """An input/output/cache path as Concourse takes it: relative to the work dir (``a/b``), the work
    dir itself (``.``), or absolute (``/var/vcap/packages/x``, BOSH package builds); normalised, no
    ``..`` and no NUL. ``/`` itself is refused (it would hide the image's root filesystem)."""
    if not value:
        raise ValueError("expected a non-empty path")
    if "\0" in value:
        raise ValueError("path contains a NUL byte")
    try:
        parts = clean_parts(value, rooted=True)
    except UnsafePath:
        raise ValueError(
            f"path {value!r} contains '..' (expected a path without '..')"
        ) from None
    if value.startswith("/"):
        if not parts:
            raise ValueError(f"path {value!r} is the container's root (expected a directory under it)")
        return "/" + "/".join(parts)
    return "/".join(parts) or "."


def _check_run_dir(value: str) -> str:
    if value.startswith("/"):
        return str(PurePosixPath(value))
    return _normalise_rel_path(value)


_MEMORY = re.compile(r"^([0-9]+)(?:([KMG])I?B?|B)?\Z", re.IGNORECASE)
_MEMORY_POWER = {"K": 10, "M": 20, "G": 30}


def parse_memory(value: int | str) -> int:
    """Memory limit in bytes from an int or ``<digits>[K|M|G][i][B]`` (binary units)."""
    if isinstance(value, bool):
        raise ValueError("expected bytes as an integer or a string like '512MB', got a boolean")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"expected a non-negative number of bytes, got {value}")
        return value
    if isinstance(value, str):
        m = _MEMORY.match(value.strip())
        if not m:
            raise ValueError(
                f"cannot parse memory limit {value!r} (expected bytes, or a number with a "
                "unit KB, MB or GB such as '512MB' or '1GB')"
            )
        return int(m.group(1)) << _MEMORY_POWER.get((m.group(2) or "").upper(), 0)
    raise ValueError(
        f"expected bytes as an integer or a string like '512MB', got {describe(value)}"
    )


_GO_DURATION = re.compile(r"^[-+]?(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:ns|us|\u00b5s|\u03bcs|ms|s|m|h))+\Z")
_GO_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
                    "h": 3600.0}


def parse_duration(value: str) -> float:
    """Seconds in a Go duration string (``90s``, ``1h30m``, ``1.5h``), as Go's time.ParseDuration reads it."""
    if value in ("0", "+0", "-0"):
        return 0.0
    if not _GO_DURATION.match(value):
        raise ValueError(f"invalid duration {value!r} (expected a number with a unit, such as '1h' or '30m')")
    sign = -1.0 if value.startswith("-") else 1.0
    total = sum(float(n) * _GO_UNIT_SECONDS[u]
                for n, u in re.findall(r"([0-9]*\.?[0-9]+\.?[0-9]*|[0-9]+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)", value))
    return sign * total


def _check_ttl(value: str) -> str:
    """``caches[].ttl`` (Concourse 8.2): a Go duration of at least one second."""
    if parse_duration(value) < 1.0:
        raise ValueError(f"cache ttl must be at least 1s, got {value!r}")
    return value


def _check_cpu(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer number of CPU shares, got {describe(value)}")
    if value < 0:
        raise ValueError(f"expected a non-negative number of CPU shares, got {value}")
    return value


def _check_param_key(key: str) -> str:
    if not key:
        raise ValueError("expected a non-empty environment variable name")
    if "=" in key or "\0" in key:
        raise ValueError(f"invalid environment variable name {key!r} (contains '=' or NUL)")
    return key


def _check_param_value(value: Any) -> Any:
    _check_jsonable(value)
    return value


def _check_jsonable(value: Any) -> None:
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise ValueError(f"{value!r} cannot be passed as a param (expected a finite number)")
        return
    if isinstance(value, list):
        for item in value:
            _check_jsonable(item)
        return
    if isinstance(value, dict):
        for item in value.values():
            _check_jsonable(item)
        return
    raise ValueError(f"expected a string, number, boolean, null, map or list, got {describe(value)}")


Identifier = Annotated[str, AfterValidator(_check_identifier)]
RelPath = Annotated[str, AfterValidator(_normalise_rel_path)]
ArtifactPath = Annotated[str, AfterValidator(_normalise_artifact_path)]
CacheTTL = Annotated[str, AfterValidator(_check_ttl)]
RunDir = Annotated[str, AfterValidator(_check_run_dir)]
ParamKey = Annotated[str, AfterValidator(_check_param_key)]
ParamValue = Annotated[Any, AfterValidator(_check_param_value)]
MemoryBytes = Annotated[int, BeforeValidator(parse_memory)]
CpuShares = Annotated[int, BeforeValidator(_check_cpu)]
