"""The house drawn from its imports (ARCHITECTURE.md): no import circle in ``src/``, and no arrow from a lower floor to
a higher one. Read with ``ast`` from the source (imports inside functions count too), so nothing is imported."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# bottom to top; a room (a package under src/, or a module directly in it) may import only rooms on lower floors
FLOORS: list[tuple[str, set[str]]] = [
    ("foundation", {"src.tasks", "src.utils"}),
    ("data and metrics", {"src.data", "src.metrics"}),
    ("baselines", {"src.baselines"}),
    ("reporting", {"src.reporting"}),
    ("evaluation", {"src.evaluation"}),
    ("methods", {"src.diffuir", "src.diff_restorer"}),
    ("inference", {"src.inference"}),
    ("entry points", {"src.train", "src.eval", "src.restore", "src.app", "src.export"}),
]
# known upward arrows, each with the move that removes it; an entry that is no longer needed fails the test
EXCEPTIONS: dict[tuple[str, str], str] = {
}


def modules(src: Path = SRC) -> dict[str, Path]:
    out = {}
    for path in sorted(src.rglob("*.py")):
        parts = path.relative_to(src.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def import_graph(src: Path = SRC) -> dict[str, set[str]]:
    """module -> the suite modules it imports (``from src.a import b`` counts ``src.a.b`` when that is a module)."""
    mods = modules(src)
    edges: dict[str, set[str]] = defaultdict(set)
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base]).strip(".")
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in mods:
                    target = target.rpartition(".")[0]  # `import src.a.b.c` of a name: its module
                if target and target != name and target != "src":
                    edges[name].add(target)
    return edges


def room(module: str) -> str:
    return ".".join(module.split(".")[:2])


def floor(module: str) -> int:
    for i, (_, rooms) in enumerate(FLOORS):
        if room(module) in rooms:
            return i
    raise AssertionError(f"{module}: its room {room(module)} has no floor in FLOORS (add it, and to ARCHITECTURE.md)")


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(set(edges) | {w for ws in edges.values() for w in ws}):
        if v not in index:
            visit(v)
    return found


def test_the_graph_reader_sees_lazy_relative_and_dotted_imports(tmp_path):
    pkg = tmp_path / "src" / "pkg"
    pkg.mkdir(parents=True)
    (tmp_path / "src" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from src.pkg import b\n")
    (pkg / "b.py").write_text("from . import c\n")
    (pkg / "c.py").write_text("import src.pkg.a\nimport numpy\n")
    edges = import_graph(tmp_path / "src")
    assert edges["src.pkg.a"] == {"src.pkg.b"} and edges["src.pkg.b"] == {"src.pkg.c"}
    assert edges["src.pkg.c"] == {"src.pkg.a"}
    assert cycles(edges) == [["src.pkg.a", "src.pkg.b", "src.pkg.c"]]


def test_no_import_circle_between_modules_or_rooms():
    edges = import_graph()
    assert cycles(edges) == []
    rooms = defaultdict(set)
    for a, targets in edges.items():
        rooms[room(a)] |= {room(b) for b in targets if room(b) != room(a)}
    assert cycles(rooms) == []


def test_every_arrow_points_down_a_floor():
    edges = import_graph()
    upward = sorted((a, b) for a, targets in edges.items() for b in targets
                    if room(a) != room(b) and floor(b) >= floor(a))
    unexplained = [f"{a} (floor {FLOORS[floor(a)][0]}) imports {b} (floor {FLOORS[floor(b)][0]})"
                   for a, b in upward if (a, b) not in EXCEPTIONS]
    assert not unexplained, "\n".join(unexplained)
    stale = [f"{edge}: {why}" for edge, why in EXCEPTIONS.items() if edge not in upward]
    assert not stale, "no longer needed, remove from EXCEPTIONS: " + "; ".join(stale)
