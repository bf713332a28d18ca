"""Count import cycles in ``mad_bench/`` statically (``ast``, nothing is imported).

Every ``import`` / ``from ... import`` of a ``mad_bench`` module counts, also those inside
functions (a lazy import is still a dependency). Two graphs:

* modules: one node per file (``pkg/__init__.py`` is ``pkg``); ``from .x import name`` points
  at ``x.name`` when that is a module, else at ``x``;
* packages: one node per top-level part (``cli``, ``run``, ``tune``, ``results``,
  ``train``, ...), an edge where any module of one imports any module of another.

A cycle is reported as a strongly connected component of more than one node (its size says
how tangled it is). Usage: ``python benchmarks/import_cycles.py [--edges]``.
"""
from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "mad_bench"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[:len(base) - node.level + 1]
                    base = ".".join(base + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.append(sub if sub in files else base)
            for t in targets:
                while t and t not in files:  # import a.b.c of a module a.b
                    t = t.rpartition(".")[0]
                if t and t != mod:
                    graph[mod].add(t)
    return graph


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    def top(m: str) -> str:
        parts = m.split(".")
        return parts[1] if len(parts) > 1 else parts[0]

    out: dict[str, set[str]] = {}
    for m, deps in graph.items():
        out.setdefault(top(m), set()).update(top(d) for d in deps if top(d) != top(m))
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    sys.setrecursionlimit(10000)

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--edges", action="store_true", help="also print the package graph's edges")
    args = ap.parse_args()
    graph = import_graph()
    for title, g in (("modules", graph), ("packages", package_graph(graph))):
        found = cycles(g)
        print(f"{title}: {len(g)} nodes, {sum(map(len, g.values()))} edges, {len(found)} cycle(s)")
        for comp in found:
            print(f"  {len(comp)}: {' '.join(comp)}")
    if args.edges:
        for p, deps in sorted(package_graph(graph).items()):
            print(f"{p} -> {', '.join(sorted(deps))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
