"""Layering rules of the package (docs/architecture.md), checked on the source with `ast`.

1. No cycle between stage packages, counting every import (module level and inside functions:
   a lazy import hides a cycle from Python, not from the design).
2. No cycle between modules at module level (what Python itself trips over).
3. No module over MAX_LINES lines, except the listed ones, which may not grow.

`python tests/test_architecture.py` prints the stage graph and the function-level imports.
"""
from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "workbench"
MAX_LINES = 400
# Modules allowed over MAX_LINES while they are split (they may shrink, not grow): none today.
TOO_LONG: dict[str, int] = {}


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


# Modules whose imports put them above their package's layer (TODO(#17): give them their own place
# once their owners are done editing them). They form their own node of the stage graph.
LAYER_OF = {
    # trains and scores the synthetic MoE: uses data.world, data.corpus and verify.probes.is_hit
    "workbench.models.synthetic": "build",
    # derives fit data by generating with the model: uses models.identity, data.corpus, scoring
    "workbench.concepts.fit": "fitdata",
}
# Upward imports allowed by name, each a convenience entry point (TODO(#17): may shrink, not grow).
ALLOWED_UPWARD = {
    ("workbench.edits.base", "workbench.patches"): "Edit.save(path) is save_patch(edit, path)",
    ("workbench.edits.rocr", "workbench.patches.stack"): "sequential ROCR reads its parent patch's preserved keys",
    ("workbench.edits.rocr", "workbench.patches.format"): "sequential ROCR reads its parent patch's preserved keys",
}


def stage(module: str) -> str:
    """The layer a module belongs to: its sub-package (`cli`, `app`, `edits`, ...) or the flat module itself."""
    if module in LAYER_OF:
        return LAYER_OF[module]
    parts = module.split(".")
    if len(parts) == 1:
        return "workbench"                       # the lazy facade (__init__): imports nothing
    return parts[1]


def imports(module: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, bool, int]]:
    """[(imported workbench module, at module level?, line)] of one file (TYPE_CHECKING blocks skipped)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_pkg = path.name == "__init__.py"
    found: list[tuple[str, bool, int]] = []

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                targets = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    pkg = module.split(".") if is_pkg else module.split(".")[:-1]
                    pkg = pkg[:len(pkg) - (child.level - 1)]
                    base = ".".join(pkg + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in child.names]
            else:
                visit(child, top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))
                continue
            for t in targets:
                if t == "workbench" or t.startswith("workbench."):
                    r = resolve(t)
                    if r and r != module:
                        found.append((r, top, child.lineno))

    visit(tree, True)
    return found


def import_graph() -> list[tuple[str, str, bool, int]]:
    """Every (importer, imported, module level?, line) inside the package."""
    modules = module_files()
    return [(m, t, top, line) for m, p in modules.items() for t, top, line in imports(m, p, modules)]


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the strongly connected components with more than one node."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]
    nodes = set(edges) | {t for ts in edges.values() for t in ts}

    def connect(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(nodes):
        if v not in index:
            connect(v)
    return out


def stage_edges(graph) -> dict[tuple[str, str], list[str]]:
    out: dict[tuple[str, str], list[str]] = defaultdict(list)
    for m, t, top, line in graph:
        a, b = stage(m), stage(t)
        if a != b and (m, t) not in ALLOWED_UPWARD:
            out[(a, b)].append(f"{m}:{line} -> {t}" + ("" if top else " (in a function)"))
    return out


def _describe(components, edges) -> str:
    lines = []
    for comp in components:
        lines.append("cycle between " + ", ".join(comp) + ":")
        lines += [f"  {e}" for (a, b), es in sorted(edges.items()) if a in comp and b in comp for e in es]
    return "\n".join(lines)


def test_no_cycle_between_stage_packages():
    edges = stage_edges(import_graph())
    adj: dict[str, set[str]] = defaultdict(set)
    for a, b in edges:
        adj[a].add(b)
    cycles = strongly_connected(adj)
    assert not cycles, _describe(cycles, edges)


def test_no_module_level_import_cycle():
    graph = import_graph()
    adj: dict[str, set[str]] = defaultdict(set)
    for m, t, top, _line in graph:
        # `import workbench.x.y` inside package x's __init__ is fine; a child importing its parent
        # package's __init__ at module level is what makes Python trip, so every edge counts.
        if top:
            adj[m].add(t)
    cycles = strongly_connected(adj)
    detail = {(m, t): [f"{m}:{line} -> {t}"] for m, t, top, line in graph if top}
    assert not cycles, _describe(cycles, detail)


def test_modules_stay_under_the_size_limit():
    too_long, grew = [], []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        n = len(path.read_text(encoding="utf-8").splitlines())
        if rel in TOO_LONG:
            if n > TOO_LONG[rel]:
                grew.append(f"{rel}: {n} lines (allowed {TOO_LONG[rel]} until it is split)")
        elif n > MAX_LINES:
            too_long.append(f"{rel}: {n} lines")
    assert not too_long, f"modules over {MAX_LINES} lines (split them): {too_long}"
    assert not grew, f"listed long modules grew: {grew}"


def test_cli_and_app_are_packages_with_one_declaration_of_the_model_arguments():
    """The CLI is `workbench/cli/` (one parser table), the dashboard support `workbench/app/`; no flat
    `cli_*` / `dashboard_*` modules; `--device` / `--dtype` are declared only by `add_model_args`."""
    flat = sorted(p.name for p in PACKAGE.glob("*.py") if p.stem.startswith(("cli", "dashboard", "docs_cli", "demo")))
    assert flat == [] and (PACKAGE / "cli" / "__init__.py").is_file() and (PACKAGE / "app" / "__init__.py").is_file()
    declaring = sorted(p.relative_to(ROOT).as_posix() for p in PACKAGE.rglob("*.py")
                       if '"--device"' in p.read_text(encoding="utf-8") or '"--dtype"' in p.read_text(encoding="utf-8"))
    assert declaring == ["workbench/cli/common.py"]
    private = [f"{p.relative_to(ROOT)}:{m} -> {t}" for p in (*ROOT.glob("analyses/*.py"), *ROOT.glob("dashboards/**/*.py"))
               for m, t in _private_cli_imports(p)]
    assert private == [], "analyses and dashboard pages must not import private CLI helpers"


def _private_cli_imports(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("workbench.cli"):
            out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names if a.name.startswith("_")]
    return out


def test_the_checker_sees_cycles_and_lazy_imports(tmp_path):
    """The walker must see function-level and relative imports, and Tarjan must find a cycle."""
    pkg = tmp_path / "workbench"
    (pkg / "a").mkdir(parents=True)
    (pkg / "b").mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a" / "__init__.py").write_text("from .x import f\n")
    (pkg / "a" / "x.py").write_text("def f():\n    from workbench.b.y import g\n    return g\n")
    (pkg / "b" / "__init__.py").write_text("")
    (pkg / "b" / "y.py").write_text("from workbench.a import f\nif TYPE_CHECKING:\n    import workbench.c\n")
    mods = {"workbench": pkg / "__init__.py", "workbench.a": pkg / "a" / "__init__.py",
            "workbench.a.x": pkg / "a" / "x.py", "workbench.b": pkg / "b" / "__init__.py",
            "workbench.b.y": pkg / "b" / "y.py"}
    assert imports("workbench.a", mods["workbench.a"], mods) == [("workbench.a.x", True, 1)]
    assert imports("workbench.a.x", mods["workbench.a.x"], mods) == [("workbench.b.y", False, 2)]
    assert imports("workbench.b.y", mods["workbench.b.y"], mods) == [("workbench.a", True, 1)]
    assert strongly_connected({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert strongly_connected({"a": {"b"}, "b": {"c"}}) == []


if __name__ == "__main__":
    graph = import_graph()
    edges = stage_edges(graph)
    adj: dict[str, set[str]] = defaultdict(set)
    for a, b in edges:
        adj[a].add(b)
    print("stage graph (importer -> imported):")
    for a in sorted(adj):
        print(f"  {a:<12} -> {', '.join(sorted(adj[a]))}")
    print("\ncycles:\n" + (_describe(strongly_connected(adj), edges) or "  none"))
    print("\nfunction-level imports across stages:")
    for (a, b), es in sorted(edges.items()):
        for e in es:
            if e.endswith("(in a function)"):
                print(f"  [{a} -> {b}] {e}")
    sys.exit(0)
