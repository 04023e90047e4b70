"""The module layout's two rules: no import cycle among threadstore's modules (lazy and
type-only imports included), and no module imports another's private names."""

from __future__ import annotations

import ast
from pathlib import Path

import threadstore

PACKAGE = Path(threadstore.__file__).parent


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports() -> tuple[dict[str, set[str]], list[str]]:
    """Each module's threadstore imports (every one, wherever it stands), and the private names
    imported from another module."""
    known = modules()
    graph: dict[str, set[str]] = {name: set() for name in known}
    private = []
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                graph[name] |= {a.name for a in node.names if a.name in known}
            elif isinstance(node, ast.ImportFrom) and (
                node.level or (node.module or "").startswith("threadstore")
            ):
                base = package if node.level else str(node.module)
                for alias in node.names:
                    target = f"{base}.{alias.name}"
                    if target in known:
                        graph[name].add(target)
                        continue
                    graph[name].add(base)
                    if alias.name.startswith("_"):
                        private.append(f"{name} imports {base}.{alias.name}")
    return graph, private


def test_no_import_cycle() -> None:
    graph, _ = imports()
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        for target in graph[name]:
            assert target not in path, " -> ".join([*path[path.index(target) :], target])
            if target not in done:
                visit(target, [*path, target])
        done.add(name)

    for name in sorted(graph):
        visit(name, [name])


def test_no_private_name_is_imported_from_another_module() -> None:
    assert imports()[1] == []
