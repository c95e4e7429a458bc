"""Params → environment: `param_to_env` spells one ``params`` value as the string a task's process
sees, the way Concourse's ``TaskEnv``/``CoercedString`` does (see `airside.task.config`'s notes):
``null`` → ``""``; strings unchanged; numbers as Go's encoding/json spells a float64 (``1``, ``1.5``,
``1e+21``; an integral float ``2.0`` is ``2``); booleans ``true``/``false``; maps and lists as compact
JSON with sorted keys and Go's HTML-safe escapes of ``<``, ``>`` and ``&``.

Values are assumed already validated (`airside.task.values`): finite numbers, JSON-shaped data.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

__all__ = ["param_to_env"]


def param_to_env(value: Any) -> str:
    """One param value as its environment string (Concourse's CoercedString rule)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return _go_json(value)


def _go_float(f: float) -> str:
    """A float spelt as Go's encoding/json spells a float64."""
    if f == int(f) and abs(f) < 1e21:
        return str(int(f))
    a = abs(f)
    if a < 1e-6 or a >= 1e21:
        s = repr(f)
        if "e" not in s:  # pragma: no cover - repr always uses an exponent in this range
            s = f"{f:e}"
        return re.sub(r"e([+-])0*(\d)", r"e\1\2", s)
    s = format(Decimal(repr(f)), "f")
    return s.rstrip("0").rstrip(".") if "." in s else s


def _go_json(value: Any) -> str:
    """Compact JSON as Go's json.Marshal writes it (sorted keys, HTML-safe escapes)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, str):
        s = json.dumps(value, ensure_ascii=False)
        return (
            s.replace("<", "\\u003c")
            .replace(">", "\\u003e")
            .replace("&", "\\u0026")
            .replace("\u2028", "\\u2028")
            .replace("\u2029", "\\u2029")
        )
    if isinstance(value, list):
        return "[" + ",".join(_go_json(v) for v in value) + "]"
    if isinstance(value, dict):
        items = sorted((_scalar_key(k), v) for k, v in value.items())
        return "{" + ",".join(f"{_go_json(k)}:{_go_json(v)}" for k, v in items) + "}"
    raise TypeError(f"cannot encode {type(value).__name__}")


def _scalar_key(key: Any) -> str:
    return key if isinstance(key, str) else param_to_env(key)
