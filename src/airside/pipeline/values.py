"""Value rules of the pipeline schema, as annotated types for `airside.pipeline.models`:

- `Duration`: Go's ``time.ParseDuration`` spelling (``90s``, ``1h30m``, ``1.5h``, ``0``);
  `CheckEvery` also takes ``never``; a string that is one ``((var))`` is left for run time.
- `Int`, `PositiveInt`, `NonNegativeInt`, `Bool`: the value, or a string that is exactly one
  ``((var))`` not given at set time (Concourse would refuse it when decoding; airside resolves it
  when the build runs and checks it then).
- `GetVersion` (``latest``, ``every`` or a mapping of strings), `PutInputs` (``all``, ``detect`` or
  a list of names), `AcrossMaxInFlight` (``all`` or an integer greater than 0);
- `identifier_warning`: Concourse's identifier rule (lower-case letters, digits, ``-``, ``_``,
  ``.``, starting with a letter or digit, not only digits): only a warning, as in Concourse.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, PlainValidator

from airside.task.errors import describe

from .vars import is_var

__all__ = [
    "AcrossMaxInFlight",
    "GetVersion",
    "PutInputs",
    "Bool",
    "CheckEvery",
    "Duration",
    "Int",
    "NonNegativeInt",
    "PositiveInt",
    "identifier_warning",
    "parse_duration",
]

_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"\A[-+]?(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:ns|us|µs|μs|ms|s|m|h))+\Z")
_PART = re.compile(r"([0-9]*\.?[0-9]*)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(value: str) -> float:
    """Seconds, from Go's duration syntax; ValueError otherwise."""
    if value in ("0", "+0", "-0"):
        return 0.0
    if not _DURATION.match(value):
        raise ValueError(f"invalid duration {value!r} (expected a duration such as 30s, 10m or 1h30m)")
    sign = -1.0 if value.startswith("-") else 1.0
    return sign * sum(float(n) * _UNIT[u] for n, u in _PART.findall(value.lstrip("+-")))


def _duration(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError(f"expected a duration such as 30s, 10m or 1h30m, got {describe(value)}")
    if not is_var(value):
        parse_duration(value)
    return value


def _check_every(value: Any) -> Any:
    if isinstance(value, str) and value in ("never", ""):
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a duration such as 1m or 'never', got {describe(value)}")
    return _duration(value)


def _int(minimum: int | None, what: str) -> Any:
    def check(value: Any) -> Any:
        if is_var(value):
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected {what}, got {describe(value)}")
        if minimum is not None and value < minimum:
            raise ValueError(f"expected {what}, got {value}")
        return value

    return check


def _bool(value: Any) -> Any:
    if isinstance(value, bool) or is_var(value):
        return value
    raise ValueError(f"expected true or false, got {describe(value)}")


Duration = Annotated[str, AfterValidator(_duration)]
CheckEvery = Annotated[str, PlainValidator(_check_every)]
Int = Annotated[int | str, PlainValidator(_int(None, "an integer"))]
NonNegativeInt = Annotated[int | str, PlainValidator(_int(0, "an integer of 0 or more"))]
PositiveInt = Annotated[int | str, PlainValidator(_int(1, "an integer greater than 0"))]
Bool = Annotated[bool | str, PlainValidator(_bool)]

def identifier_warning(name: str) -> str | None:
    """Why `name` is not a valid Concourse identifier (a warning there and here), or None."""
    if is_var(name):
        return None
    if name.isdigit():
        return f"{name!r} is not a valid identifier: cannot be just numbers"
    first = name[:1]
    if not (first.isdigit() or (first.isalpha() and not first.isupper())):
        return f"{name!r} is not a valid identifier: must start with a lowercase letter or a number"
    for c in name[1:]:
        if not (c.isdigit() or (c.isalpha() and not c.isupper()) or c in "-_."):
            return f"{name!r} is not a valid identifier: illegal character {c!r}"
    return None


def _get_version(value: Any) -> Any:
    if value in ("latest", "every") or is_var(value):
        return value
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise ValueError(f"the value {describe(v)} of {k!r} is not a string (quote it)")
        return value
    raise ValueError(f"expected 'latest', 'every' or a mapping of strings (a version), got {describe(value)}")


def _put_inputs(value: Any) -> Any:
    if value in ("all", "detect") or is_var(value):
        return value
    if isinstance(value, list):
        for v in value:
            if not isinstance(v, str):
                raise ValueError(f"expected the names of artifacts, got {describe(v)} in the list")
        return [v.strip() for v in value]
    raise ValueError(f"expected 'all', 'detect' or a list of artifact names, got {describe(value)}")


def _across_max_in_flight(value: Any) -> Any:
    if value == "all":
        return value
    if isinstance(value, str) and not is_var(value):
        raise ValueError(f"invalid max_in_flight {value!r} (expected 'all' or an integer greater than 0)")
    return _int(1, "'all' or an integer greater than 0")(value)


GetVersion = Annotated[str | dict[str, str], PlainValidator(_get_version)]
PutInputs = Annotated[str | list[str], PlainValidator(_put_inputs)]
AcrossMaxInFlight = Annotated[int | str, PlainValidator(_across_max_in_flight)]
