"""No import cycles inside the callscribe package, function-level imports included.

A cycle hidden behind an import inside a function still couples the modules both ways and
breaks as soon as someone hoists the import, so every ``import`` statement counts, wherever
it sits (also under ``if TYPE_CHECKING:``: a type-only cycle is the same layering knot).
The graph is read from the source with ``ast``; nothing is imported.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[2] / "include" / "callscribe"

# Cycles known and accepted for now, as the set of modules in each strongly connected
# component. The test fails when a component is new or grows beyond the one listed, and
# when a listed one is gone (take it off). Each entry says why it is still here.
ALLOWED_CYCLES: list[frozenset[str]] = []  # none: a new cycle is fixed, not listed


def module_names(package_dir: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under the package (``__init__`` names the package)."""
    root = package_dir.name
    names = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join([root, *parts])] = path
    return names


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _known_prefix(name: str, modules: dict[str, Path]) -> str | None:
    """The module that ``import name`` ends in: itself, or the longest known prefix
    (``import pkg.mod.attr`` is not valid Python, but a ``from pkg.mod import attr`` is resolved the same way)."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        candidate = ".".join(parts[:i])
        if candidate in modules:
            return candidate
    return None


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> dict[str, int]:
    """Package-internal modules that ``name`` imports -> the first line doing so."""
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(), filename=str(path))
    found: dict[str, int] = {}

    def add(target: str | None, line: int) -> None:
        if target is None or target == name:
            return
        # Importing a.b.c first runs the packages a.b and a; those that are not already
        # running (ancestors of the importer) are executed on its behalf, so they are edges too.
        mine = set(_ancestors(name)) | {name}
        for t in [*_ancestors(target), target]:
            if t in modules and t not in mine:
                found.setdefault(t, line)

    for node in ast.walk(tree):  # every statement, at any depth: function bodies included
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(_known_prefix(alias.name, modules), node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                # Relative: level 1 is the importer's own package (a package's __init__ is its own).
                base_parts = name.split(".") if is_package else name.split(".")[:-1]
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join([*base_parts, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                add(sub if sub in modules else _known_prefix(base, modules), node.lineno)
    return found


def import_graph(package_dir: Path) -> dict[str, dict[str, int]]:
    modules = module_names(package_dir)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def strongly_connected(graph: dict[str, Iterable[str]]) -> list[set[str]]:
    """Tarjan's components with more than one module (iterative: no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[set[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(component)
    return out


def one_cycle(graph: dict[str, dict[str, int]], component: set[str]) -> list[str]:
    """A shortest cycle through the component's first module, as 'a:line -> b:line -> ... -> a'."""
    start = min(component)
    prev: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for node in frontier:
            for child in sorted(graph[node]):
                if child not in component:
                    continue
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(prev[path[-1]])
                    path.reverse()
                    path.append(start)
                    return [f"{a} (line {graph[a][b]})" for a, b in zip(path, path[1:], strict=False)] + [start]
                if child not in prev:
                    prev[child] = node
                    nxt.append(child)
        frontier = nxt
    raise AssertionError(f"no cycle through {start}")  # a component always has one


def cycle_report(package_dir: Path, allowed: list[frozenset[str]] = ()) -> list[str]:
    """One line per cycle that is not allowed (a new component, or an allowed one that grew)."""
    graph = import_graph(package_dir)
    return [" -> ".join(one_cycle(graph, comp)) for comp in strongly_connected(graph)
            if not any(comp <= ok for ok in allowed)]


# ---------------------------------------------------------------- the package


def test_callscribe_has_no_import_cycles():
    assert len(module_names(PACKAGE_DIR)) > 30  # the walk found the package, not an empty folder
    problems = cycle_report(PACKAGE_DIR, ALLOWED_CYCLES)
    assert not problems, "import cycles (function-level imports count):\n" + "\n".join(problems)


def test_the_allowlist_names_only_cycles_that_still_exist():
    # An allowlisted cycle that was fixed must leave the list, so it cannot come back unnoticed.
    found = strongly_connected(import_graph(PACKAGE_DIR))
    stale = [sorted(ok) for ok in ALLOWED_CYCLES if not any(comp & ok for comp in found)]
    assert not stale, f"fixed cycles still allowlisted: {stale}"


def test_the_graph_sees_the_engines_through_their_factories():
    # The engine registry imports its engines inside functions: they must be edges.
    graph = import_graph(PACKAGE_DIR)
    assert {"callscribe.engines.granite", "callscribe.engines.granite_native",
            "callscribe.engines.whisper"} <= set(graph["callscribe.engines"])


# ---------------------------------------------------------------- the detector, on made-up packages


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_a_cycle_behind_a_function_level_import_is_found(tmp_path):
    root = _package(tmp_path, {
        "__init__.py": "",
        "a.py": "from pkg.b import thing\n",
        "b.py": "thing = 1\n\ndef late():\n    from pkg import a\n    return a\n",
        "c.py": "import pkg.a\n",  # imports into the cycle, is not part of it
    })
    problems = cycle_report(root)
    assert len(problems) == 1
    assert problems[0].startswith("pkg.a (line 1) -> pkg.b (line 4) -> pkg.a")
    assert "pkg.c" not in problems[0]


def test_relative_imports_and_package_inits_make_edges(tmp_path):
    root = _package(tmp_path, {
        "__init__.py": "",
        "sub/__init__.py": "from .x import X\n",
        "sub/x.py": "X = 1\n",
        "y.py": "from .sub.x import X\n",
        # z -> sub/__init__ (implicitly, by importing sub.x) -> sub.x -> z
        "z.py": "import pkg.sub.x\n",
    })
    assert cycle_report(root) == []  # a package importing its own submodule is no cycle
    (root / "sub" / "x.py").write_text("def f():\n    from .. import z\n    return z\nX = 1\n")
    problems = cycle_report(root)
    assert len(problems) == 1 and "pkg.sub.x" in problems[0] and "pkg.z" in problems[0]


def test_an_allowlisted_cycle_passes_until_it_grows(tmp_path):
    root = _package(tmp_path, {
        "__init__.py": "", "a.py": "from . import b\n", "b.py": "from . import a\n", "c.py": "",
    })
    allowed = [frozenset({"pkg.a", "pkg.b"})]
    assert cycle_report(root, allowed) == []
    (root / "b.py").write_text("from . import a, c\n")
    (root / "c.py").write_text("from . import a\n")
    assert len(cycle_report(root, allowed)) == 1


# ---------------------------------------------------------------- callscribe.dev stays out of production

# The production images delete callscribe/dev after installing the package, so nothing they
# run may need it: no module outside it imports it at module level, and the only
# function-level imports are these, each behind a clear "needs the development install".
DEV_PACKAGE = "callscribe.dev"
ALLOWED_DEV_IMPORTS: set[tuple[str, str]] = {
    ("callscribe.cli", "_embedded"),  # embedded services when nothing is configured; None without dev
    ("callscribe.cli", "cmd_services"),
    ("callscribe.cli", "cmd_ui"),
    ("callscribe.cli", "cmd_demo"),
    ("callscribe.cli", "cmd_bench"),
    ("callscribe.cli", "_bench_throughput"),  # `callscribe bench --batch/--random-weights`
    ("callscribe.cli", "cmd_parity"),
}
# What the Airflow image runs besides the package: parsed by the DAG processor, loaded by
# the webserver. They get no allowlist at all.
AIRFLOW_DIRS = [PACKAGE_DIR.parents[1] / "dags", PACKAGE_DIR.parents[1] / "plugins"]


def _is_dev(target: str) -> bool:
    return target == DEV_PACKAGE or target.startswith(DEV_PACKAGE + ".")


def dev_imports(name: str, path: Path, package: str = DEV_PACKAGE) -> list[tuple[str | None, int]]:
    """(enclosing function or None for module level, line) of each import of ``package``.

    Also ``importlib.import_module("...")`` / ``__import__("...")`` with a literal name, so a
    dynamic import cannot slip past. Relative imports are resolved against ``name``.
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    hits: list[tuple[str | None, int]] = []

    def inside(target: str) -> bool:
        return target == package or target.startswith(package + ".")

    def visit(node: ast.AST, func: str | None) -> None:
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = name.split(".") if is_package else name.split(".")[:-1]
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            targets = [base, *(f"{base}.{a.name}" for a in node.names)]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            called = ast.unparse(node.func)
            if called in ("importlib.import_module", "import_module", "__import__"):
                targets = [str(node.args[0].value)]
        if any(inside(t) for t in targets):
            hits.append((func, node.lineno))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            func = node.name if func is None else f"{func}.{node.name}"
        for child in ast.iter_child_nodes(node):
            visit(child, func)

    visit(tree, None)
    return hits


def test_nothing_outside_callscribe_dev_needs_it():
    modules = module_names(PACKAGE_DIR)
    assert any(_is_dev(m) for m in modules) and "callscribe.cli" in modules  # the walk found both sides
    problems, seen = [], set()
    for name, path in modules.items():
        if _is_dev(name):
            continue
        for func, line in dev_imports(name, path):
            if func is None:
                problems.append(f"{name} line {line}: imports {DEV_PACKAGE} at module level")
            elif (name, func) not in ALLOWED_DEV_IMPORTS:
                problems.append(f"{name} line {line}: imports {DEV_PACKAGE} in {func}() (not a dev command)")
            else:
                seen.add((name, func))
    for folder in AIRFLOW_DIRS:
        assert folder.is_dir(), folder
        for path in sorted(folder.rglob("*.py")):
            for _func, line in dev_imports(path.stem, path):
                problems.append(f"{path.relative_to(folder.parent)} line {line}: imports {DEV_PACKAGE}")
    assert not problems, "production code needs the development package:\n" + "\n".join(problems)
    # An entry that no longer imports it leaves the list, so the list stays exact.
    assert seen == ALLOWED_DEV_IMPORTS, f"allowlisted but no longer importing: {ALLOWED_DEV_IMPORTS - seen}"


def test_the_dev_import_rule_sees_every_form(tmp_path):
    root = _package(tmp_path, {
        "__init__.py": "",
        "dev/__init__.py": "",
        "dev/tool.py": "X = 1\n",
        "top.py": "from pkg.dev.tool import X\n",
        "rel.py": "from . import dev\n",
        "typed.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.dev.tool\n",
        "late.py": "def cmd():\n    from .dev import tool\n    return tool\n",
        "nested.py": "class C:\n    def m(self):\n        def inner():\n            import pkg.dev\n",
        "dynamic.py": "import importlib\n\ndef f():\n    return importlib.import_module('pkg.dev.tool')\n",
        "clean.py": "from pkg import top\nDEV = 'pkg.dev'\n",
    })
    found = {path.stem: dev_imports(n, path, "pkg.dev") for n, path in module_names(root).items()
             if not n.startswith("pkg.dev")}
    assert found["top"] == [(None, 1)]
    assert found["rel"] == [(None, 1)]
    assert found["typed"] == [(None, 3)]  # type-only still counts as module level
    assert found["late"] == [("cmd", 2)]
    assert found["nested"] == [("m.inner", 4)]
    assert found["dynamic"] == [("f", 4)]
    assert found["clean"] == []
