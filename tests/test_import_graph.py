"""The package's modules depend on each other one way: no import cycle, not even one hidden in a
function body or behind ``TYPE_CHECKING``. Only imports of fastcarto's own modules are graph
edges; third-party packages (matplotlib, pandas, sklearn, ...) may be imported lazily."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "fastcarto"
ROOT = Path(__file__).resolve().parents[1] / "python" / PACKAGE


def package_modules(root: Path) -> dict[str, Path]:
    """Every module of the package at ``root`` by dotted name (``.py`` files, and the compiled
    ``_core`` by its stub)."""

    def name(path: Path) -> str:
        parts = path.relative_to(root.parent).with_suffix("").parts
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

    modules = {name(p): p for p in sorted(root.rglob("*.py"))}
    for stub in sorted(root.rglob("*.pyi")):
        modules.setdefault(name(stub), stub)
    return modules


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules that ``name`` (the module at ``path``) imports anywhere in its body:
    at the top, in functions and under ``if TYPE_CHECKING``."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            # ``from . import _core`` imports the module _core; ``from . import __version__`` a
            # name of the package itself.
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in modules else target)
    return {m for m in found if m in modules and m != name}


def import_graph(root: Path) -> dict[str, set[str]]:
    modules = package_modules(root)
    return {
        name: imports_of(name, path, modules) if path.suffix == ".py" else set()
        for name, path in modules.items()
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path ``[a, b, ..., a]``, or None when it is acyclic."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


def test_package_has_no_import_cycle() -> None:
    graph = import_graph(ROOT)
    assert len(graph) > 10, f"found only {sorted(graph)} under {ROOT}"
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_data_map_calls_down() -> None:
    # The modules DataMap's methods delegate to read the table below it, never DataMap itself.
    graph = import_graph(ROOT)
    assert {
        f"{PACKAGE}._regions",
        f"{PACKAGE}._label_issues",
        f"{PACKAGE}._plots",
        f"{PACKAGE}._trajectories",
    } <= graph[f"{PACKAGE}._datamap"]
    for lower in ("_regions", "_label_issues", "_plots", "_trajectories", "_metric_table"):
        assert f"{PACKAGE}._datamap" not in graph[f"{PACKAGE}.{lower}"], lower


@pytest.mark.parametrize(
    ("source", "where"),
    [
        ("from ._b import f\n", "top"),
        ("def g():\n    from ._b import f\n", "function"),
        ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ._b import T\n", "typing"),
        ("from . import _b\n", "module"),
        ("import fastcarto._b\n", "absolute"),
    ],
)
def test_cycle_found_wherever_the_import_is(tmp_path: Path, source: str, where: str) -> None:
    # A cycle closed by a lazy or type-only import is still found; third-party imports are not
    # edges.
    root = tmp_path / PACKAGE
    root.mkdir()
    (root / "__init__.py").write_text("")
    (root / "_a.py").write_text("import matplotlib\nfrom ._b import g\n")
    (root / "_b.py").write_text(source.replace("_b", "_a"))
    graph = import_graph(root)
    assert graph[f"{PACKAGE}._a"] == {f"{PACKAGE}._b"}, where
    assert find_cycle(graph) == [f"{PACKAGE}._a", f"{PACKAGE}._b", f"{PACKAGE}._a"], where


def test_no_cycle_in_a_layered_package(tmp_path: Path) -> None:
    root = tmp_path / PACKAGE
    root.mkdir()
    (root / "__init__.py").write_text("from ._a import g\nfrom ._b import f\n")
    (root / "_a.py").write_text("from ._b import f\ndef g():\n    import pandas\n")
    (root / "_b.py").write_text("import numpy\n")
    graph = import_graph(root)
    assert graph[PACKAGE] == {f"{PACKAGE}._a", f"{PACKAGE}._b"}
    assert find_cycle(graph) is None
