"""No new `Any` in the public signatures of runtime/, baggageclaim/ and web/.

Walks the packages' sources with `ast` (nothing is imported) and finds every public function and method
whose parameter or return annotations mention `Any`. Public: the function's name has no leading
underscore, nor does any enclosing class or any part of its module's name; a dunder (`__init__`,
`__call__`: a public class's constructor and call) counts as public, and `__init__.py` is the package
itself. Functions nested in functions are local and never public. `Any` is the name `Any` (or what
`from typing import Any as X` binds) or any attribute `.Any` (`typing.Any`, `t.Any`), also inside a
string annotation. `Any` hidden behind a type alias is not seen.

Each case is named `module:qualname` (`airside.web.app:create_app`, `airside.runtime.oci:OciRuntime.run`)
and compared with the allow-list (`public_any.allow` beside this file): one entry a line, each with a
`# reason` comment; blank and comment-only lines are ignored. The check fails, naming file:line, for a
case not on the list; it also fails for an entry that is no longer a case (gone, renamed, or typed
precisely now), for an entry without a reason and for a duplicate entry, so that the list only shrinks.

`--write-allow` rewrites the list to today's cases, keeping the reasons of entries that stay, and prints
what it added and dropped. Exit status: 0 clean, 1 a finding, 2 bad usage.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_ROOT = REPO / "src"
DEFAULT_ALLOW = Path(__file__).resolve().with_name("public_any.allow")
DEFAULT_PACKAGES = ("airside.runtime", "airside.baggageclaim", "airside.web")
_TYPING_MODULES = {"typing", "typing_extensions"}


@dataclass(frozen=True)
class Case:
    """One public function whose signature mentions Any."""

    key: str  # module:qualname
    path: Path
    line: int
    where: tuple[str, ...]  # the parameters (and "return") whose annotation mentions Any


@dataclass(frozen=True)
class Entry:
    key: str
    reason: str
    line: int


def _public(name: str) -> bool:
    return not name.startswith("_") or (len(name) > 4 and name.startswith("__") and name.endswith("__"))


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _any_names(tree: ast.Module) -> set[str]:
    """Local names bound to typing.Any by `from typing import Any [as X]` anywhere in the module."""
    names = {"Any"}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in _TYPING_MODULES:
            names.update(a.asname or a.name for a in node.names if a.name == "Any")
    return names


def _mentions_any(annotation: ast.expr | None, any_names: set[str]) -> bool:
    if annotation is None:
        return False
    for node in ast.walk(annotation):
        if isinstance(node, ast.Name) and node.id in any_names:
            return True
        if isinstance(node, ast.Attribute) and node.attr == "Any":
            return True
        if isinstance(node, ast.Constant) and isinstance(node.value, str):  # a quoted annotation
            try:
                inner = ast.parse(node.value, mode="eval").body
            except SyntaxError:
                continue
            if _mentions_any(inner, any_names):
                return True
    return False


def _signature_any(fn: ast.FunctionDef | ast.AsyncFunctionDef, any_names: set[str]) -> tuple[str, ...]:
    a = fn.args
    params = [*a.posonlyargs, *a.args, *([a.vararg] if a.vararg else []), *a.kwonlyargs,
              *([a.kwarg] if a.kwarg else [])]
    where = [p.arg for p in params if _mentions_any(p.annotation, any_names)]
    if _mentions_any(fn.returns, any_names):
        where.append("return")
    return tuple(where)


def _public_functions(body: list[ast.stmt], prefix: str) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """(qualname, def) of the public functions in a module or class body, through if/try/with blocks."""
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if _public(node.name):
                yield prefix + node.name, node
        elif isinstance(node, ast.ClassDef):
            if _public(node.name):
                yield from _public_functions(node.body, f"{prefix}{node.name}.")
        else:
            for field in ("body", "orelse", "finalbody"):
                yield from _public_functions(getattr(node, field, []), prefix)
            for handler in getattr(node, "handlers", []):
                yield from _public_functions(handler.body, prefix)


def find_cases(root: Path, packages: tuple[str, ...]) -> list[Case]:
    """Every public function of the packages (under `root`) whose signature mentions Any, by key."""
    found: dict[str, Case] = {}
    for package in packages:
        base = root.joinpath(*package.split("."))
        files = sorted(base.rglob("*.py")) if base.is_dir() else [base.with_suffix(".py")]
        for path in files:
            module = _module_name(root, path)
            if not all(_public(part) for part in module.split(".")):
                continue
            tree = ast.parse(path.read_text(), filename=str(path))
            any_names = _any_names(tree)
            for qualname, fn in _public_functions(tree.body, ""):
                where = _signature_any(fn, any_names)
                key = f"{module}:{qualname}"
                if where and key not in found:  # the first of a set of @overloads names the case
                    found[key] = Case(key, path, fn.lineno, where)
    return sorted(found.values(), key=lambda c: c.key)


def read_allow(path: Path) -> tuple[list[Entry], list[str]]:
    """The entries of an allow-list file and the problems of its lines (no reason, duplicate)."""
    entries: list[Entry] = []
    problems: list[str] = []
    seen: set[str] = set()
    if not path.exists():
        return entries, problems
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        key, _, reason = raw.partition("#")
        key, reason = key.strip(), reason.strip()
        if not key:
            continue
        if not reason:
            problems.append(f"{path}:{n}: {key}: an allow-list entry needs a `# reason`")
        if key in seen:
            problems.append(f"{path}:{n}: {key}: listed twice")
        seen.add(key)
        entries.append(Entry(key, reason, n))
    return entries, problems


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def check(cases: list[Case], entries: list[Entry], problems: list[str], allow: Path) -> list[str]:
    """The findings: allow-list problems, new cases, stale entries."""
    allowed = {e.key for e in entries}
    current = {c.key for c in cases}
    out = list(problems)
    for c in cases:
        if c.key not in allowed:
            out.append(f"{_shown(c.path)}:{c.line}: {c.key}: Any in a public signature ({', '.join(c.where)}); "
                       f"type it precisely (a small Protocol for duck-typed values), or list it in {_shown(allow)} "
                       f"with a reason")
    for e in entries:
        if e.key not in current:
            out.append(f"{_shown(allow)}:{e.line}: {e.key}: no longer a public signature with Any; "
                       f"remove the entry (the list only shrinks)")
    return out


def write_allow(cases: list[Case], entries: list[Entry], allow: Path) -> None:
    reasons = {e.key: e.reason for e in entries}
    header = [
        "# Public signatures in runtime/, baggageclaim/ and web/ that mention Any today (tools/lint/public_any.py).",
        "# One `module:qualname  # reason` a line. The list only shrinks: make lint fails on a new case and",
        "# on an entry that is no longer one. Regenerate: python3 tools/lint/public_any.py --write-allow",
    ]
    lines = [f"{c.key}  # {reasons.get(c.key) or 'Any in ' + ', '.join(c.where)}" for c in cases]
    allow.write_text("\n".join([*header, "", *lines]) + "\n")
    current = {c.key for c in cases}
    for c in cases:
        if c.key not in reasons:
            print(f"added   {c.key}  ({_shown(c.path)}:{c.line})")
    for key in reasons:
        if key not in current:
            print(f"dropped {key}")
    print(f"wrote {_shown(allow)}: {len(cases)} entries")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("packages", nargs="*", default=list(DEFAULT_PACKAGES),
                   help="dotted packages under --root (default: %(default)s)")
    p.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="source root (default: src/)")
    p.add_argument("--allow", type=Path, default=DEFAULT_ALLOW, help="allow-list file")
    p.add_argument("--write-allow", action="store_true", help="rewrite the allow-list to today's cases")
    args = p.parse_args(argv)
    packages = tuple(args.packages)
    for package in packages:
        base = args.root.joinpath(*package.split("."))
        if not base.is_dir() and not base.with_suffix(".py").is_file():
            p.error(f"no package {package} under {args.root}")
    cases = find_cases(args.root, packages)
    entries, problems = read_allow(args.allow)
    if args.write_allow:
        write_allow(cases, entries, args.allow)
        return 0
    findings = check(cases, entries, problems, args.allow)
    for f in findings:
        print(f, file=sys.stderr)
    if findings:
        print(f"public_any: {len(findings)} finding(s)", file=sys.stderr)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
