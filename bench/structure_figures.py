"""Structure figures for issue 15: in-function imports (by ast) and the largest modules.

    .venv/bin/python bench/structure_figures.py [--tests]

Counts the application code (the apps, core, observator, celery_app.py, dev.py); ``--tests`` adds tests/
and bench/. Prints the total, the files with the most in-function imports, the largest modules by lines,
and the import cycles among the apps' modules (groups of modules that import each other, in-function
imports included; grimp, which import-linter brings, builds the graph).
Not a benchmark: no timing, only counts, so the before/after figures of a refactor can be compared.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIP = {".venv", "node_modules", "var", "migrations", "__pycache__"}
APP_ROOTS = [
    "accounts",
    "market",
    "mlmodel",
    "trading",
    "autotrade",
    "core",
    "observator",
    "celery_app.py",
    "dev.py",
]


def python_files(with_tests: bool) -> list[Path]:
    roots = APP_ROOTS + (["tests", "bench"] if with_tests else [])
    out: list[Path] = []
    for name in roots:
        p = ROOT / name
        if p.is_file():
            out.append(p)
        elif p.is_dir():
            out += [f for f in p.rglob("*.py") if not SKIP & set(f.relative_to(ROOT).parts)]
    return sorted(out)


def in_function_imports(tree: ast.AST) -> int:
    """``import``/``from .. import`` statements anywhere inside a function or method body."""
    count = 0

    def walk(node: ast.AST, in_func: bool) -> None:
        nonlocal count
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom) and in_func:
                count += 1
            walk(child, in_func or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda))

    walk(tree, False)
    return count


def import_cycles() -> list[list[str]]:
    """Strongly connected groups (more than one module) of the apps' import graph (Tarjan)."""
    import grimp  # dev-only tool (import-linter); only this figure needs it

    sys.path.insert(0, str(ROOT))
    # Runtime imports only: an ``if TYPE_CHECKING:`` import (a type named in an annotation) is not a cycle.
    graph = grimp.build_graph(
        "core", "accounts", "market", "mlmodel", "trading", "autotrade", exclude_type_checking_imports=True
    )
    adj = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in adj.get(v, []):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for m in sorted(adj):
        if m not in index:
            visit(m)
    return sorted(groups, key=len, reverse=True)


def main(argv: list[str]) -> int:
    files = python_files("--tests" in argv)
    per_file: list[tuple[int, str]] = []
    sizes: list[tuple[int, str]] = []
    for f in files:
        text = f.read_text(encoding="utf-8")
        rel = str(f.relative_to(ROOT))
        per_file.append((in_function_imports(ast.parse(text, filename=rel)), rel))
        sizes.append((text.count("\n"), rel))
    total = sum(n for n, _ in per_file)
    print(f"files: {len(files)}")
    print(f"in-function imports: {total}")
    for n, rel in sorted(per_file, reverse=True)[:5]:
        print(f"  {n:4d}  {rel}")
    print("largest modules (lines):")
    for n, rel in sorted(sizes, reverse=True)[:5]:
        print(f"  {n:5d}  {rel}")
    cycles = import_cycles()
    print(f"import cycles: {len(cycles)}")
    for group in cycles:
        print(f"  {len(group)} modules: {', '.join(group)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
