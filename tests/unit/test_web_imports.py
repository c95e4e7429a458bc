"""airside.web's modules import each other in no circle, and nothing in airside.web imports its composition
root (airside.web.app): the app wires routers and the service; routers and services do not import the app.

The graph is grimp's (import-linter's engine), read from the sources: every import statement counts, also
one under `if TYPE_CHECKING:` or inside a function (a lazy import closes a circle as much as any other).
"""

from __future__ import annotations

import grimp
import pytest

WEB = "airside.web"
APP = "airside.web.app"


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("airside", cache_dir=None)


def web_edges(graph: grimp.ImportGraph) -> dict[str, set[str]]:
    mods = {m for m in graph.modules if m == WEB or m.startswith(WEB + ".")}
    return {m: graph.find_modules_directly_imported_by(m) & mods for m in sorted(mods)}


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module, or one that imports itself (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(m: str) -> None:
        index[m] = low[m] = len(index)
        stack.append(m)
        for n in sorted(edges[m]):
            if n not in index:
                visit(n)
                low[m] = min(low[m], low[n])
            elif n in stack:
                low[m] = min(low[m], index[n])
        if low[m] == index[m]:
            component = []
            while True:
                n = stack.pop()
                component.append(n)
                if n == m:
                    break
            if len(component) > 1 or m in edges[m]:
                found.append(sorted(component))

    for m in edges:
        if m not in index:
            visit(m)
    return found


def describe(graph: grimp.ImportGraph, component: list[str]) -> str:
    lines = []
    for a in component:
        for b in sorted(graph.find_modules_directly_imported_by(a) & set(component)):
            for d in graph.get_import_details(importer=a, imported=b):
                lines.append(f"  {a}:{d['line_number']}: {d['line_contents']}")
    return "\n".join(lines)


def test_no_import_circle_among_web_modules(graph: grimp.ImportGraph) -> None:
    edges = web_edges(graph)
    assert {APP, "airside.web.service", "airside.web.api_builds", "airside.web.kube_dispatch"} <= set(edges)
    found = circles(edges)
    assert not found, "import circles in airside.web:\n" + "\n".join(describe(graph, c) for c in found)


def test_nothing_in_web_imports_the_composition_root(graph: grimp.ImportGraph) -> None:
    importers = sorted(m for m in graph.find_modules_that_directly_import(APP) if m.startswith(WEB + "."))
    assert not importers, f"{APP} is the composition root; these import it: {importers}"


def test_circles_finds_a_circle_through_three_modules() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert circles(edges) == [["a", "b", "c"], ["e"]]
