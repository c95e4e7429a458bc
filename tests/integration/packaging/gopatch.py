"""Just enough of go-patch (what `bosh int -o` applies) to prove ops files fit the manifest: `replace` and
`remove` with map keys, `name=value` array matchers, indexes, `-` (append) and `?` (optional from here on).
A stand-in, because the bosh CLI and go-patch are not served by the Go module proxy on this machine."""

from __future__ import annotations

import copy
from typing import Any


class PatchError(Exception):
    pass


def _tokens(path: str) -> list[tuple[str, bool]]:
    if not path.startswith("/"):
        raise PatchError(f"{path}: must start with /")
    out, optional = [], False
    for raw in path.split("/")[1:]:
        optional = optional or raw.endswith("?")
        out.append((raw.rstrip("?"), optional))
    return out


def _child(node: Any, token: str, optional: bool, create: bool, path: str) -> Any:
    if isinstance(node, dict):
        if token not in node:
            if not (optional and create):
                raise PatchError(f"{path}: no key {token!r}")
            node[token] = {}
        return node[token]
    if isinstance(node, list):
        if "=" in token:
            k, v = token.split("=", 1)
            for item in node:
                if isinstance(item, dict) and str(item.get(k)) == v:
                    return item
            if not (optional and create):
                raise PatchError(f"{path}: no element with {token}")
            node.append({k: v})
            return node[-1]
        return node[int(token)]
    raise PatchError(f"{path}: {token!r} inside a scalar")


def apply(doc: Any, ops: list[dict[str, Any]], variables: dict[str, Any] | None = None) -> Any:
    doc = copy.deepcopy(doc)
    for op in ops:
        path, kind = op["path"], op["type"]
        tokens = _tokens(path)
        parent = doc
        for token, optional in tokens[:-1]:
            parent = _child(parent, token, optional, kind == "replace", path)
        last, optional = tokens[-1]
        if kind == "replace":
            value = copy.deepcopy(op["value"])
            if last == "-":
                parent.append(value)
            elif isinstance(parent, list) and "=" in last:
                k, v = last.split("=", 1)
                idx = [i for i, x in enumerate(parent) if isinstance(x, dict) and str(x.get(k)) == v]
                if idx:
                    parent[idx[0]] = value
                elif optional:
                    parent.append(value)
                else:
                    raise PatchError(f"{path}: no element with {last}")
            elif isinstance(parent, list):
                parent[int(last)] = value
            else:
                parent[last] = value
        elif kind == "remove":
            if isinstance(parent, list) and "=" in last:
                k, v = last.split("=", 1)
                keep = [x for x in parent if not (isinstance(x, dict) and str(x.get(k)) == v)]
                if len(keep) == len(parent) and not optional:
                    raise PatchError(f"{path}: no element with {last}")
                parent[:] = keep
            elif isinstance(parent, dict):
                if last not in parent and not optional:
                    raise PatchError(f"{path}: no key {last!r}")
                parent.pop(last, None)
            else:
                del parent[int(last)]
        else:
            raise PatchError(f"{path}: unknown op type {kind!r}")
    return doc
