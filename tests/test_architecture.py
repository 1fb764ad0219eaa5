"""The package's shape: no import cycles among `jasper.*` modules, the layering rules, no file over 400 lines."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).parent.parent / "src"
MAX_LINES = 400
# (importer prefix, imported prefix): a module under the first never imports one under the second
FORBIDDEN = [
    ("jasper.eval", "jasper.train"),
    ("jasper.export", "jasper.train"),
    ("jasper.encode", "jasper.train"),
    ("jasper.serve", "jasper.train"),
    ("jasper.data", "jasper.models"),
    ("jasper.losses", "jasper.data"),
    ("jasper.losses", "jasper.models"),
]


def _modules() -> dict[str, Path]:
    found = {}
    for path in (SRC / "jasper").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Every module each module imports, anywhere in its file (inside functions too), resolved to a module."""

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    edges: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [resolve(alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else resolve(base) for a in node.names]
            else:
                continue
            edges[module] |= {t for t in targets if t and t != module}
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in edges[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in edges:
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles():
    assert _cycles(_imports(_modules())) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_layering():
    edges = _imports(_modules())
    broken = [
        f"{module} imports {target}"
        for module, targets in edges.items()
        for target in targets
        for importer, imported in FORBIDDEN
        if (module == importer or module.startswith(importer + ".")) and target.startswith(imported)
    ]
    assert broken == []


def test_no_file_over_the_limit():
    sizes = {m: len(p.read_text(encoding="utf-8").splitlines()) for m, p in _modules().items()}
    assert {m: n for m, n in sizes.items() if n > MAX_LINES} == {}
