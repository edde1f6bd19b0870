"""The dependency rule of docs/architecture.md, read from the code's own imports (no import runs):
each layer imports only the layers below it, `protocol/` nothing of the app, and no module
imports itself back through others (type-checking imports count too: they are circles for
the reader all the same)."""

from __future__ import annotations

import ast
import pathlib

from tests.support import ROOT

#: what each top-level place of the app may import (besides itself)
ALLOWED = {
    "protocol": set(),
    "tasks": set(),
    "logs": set(),
    "heap": set(),
    "metrics": {"tasks"},
    "tracking": {"metrics"},
    "store": {"logs", "metrics", "tasks", "protocol"},
    "handlers": {"store", "protocol", "tracking", "logs", "metrics", "tasks"},
    "web": {"store", "protocol", "logs", "metrics"},
    "config": {"logs", "protocol", "store", "handlers"},
    "server": {"config", "web", "handlers", "store", "protocol", "tracking", "logs", "metrics",
               "tasks", "heap"},
}
PACKAGES = ("protocol", "store", "handlers", "web")


def production_modules() -> dict[str, pathlib.Path]:
    """Dotted name -> file, for every module of the app."""
    modules = {path.stem: ROOT / path for path in map(pathlib.Path, ("server.py", "config.py",
                                                                   "logs.py", "metrics.py",
                                                                   "tracking.py", "tasks.py",
                                                                   "heap.py"))}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    return modules


def imported(path: pathlib.Path, name: str, known: set[str]) -> set[str]:
    """The app's modules `path` imports, as dotted names of `known`."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    modules = production_modules()
    known = set(modules)
    return {name: imported(path, name, known) for name, path in modules.items()}


def top(name: str) -> str:
    return name.partition(".")[0]


def test_each_layer_imports_only_the_layers_below_it() -> None:
    wrong = sorted(
        f"{name} -> {target}"
        for name, targets in graph().items()
        for target in targets
        if top(target) != top(name) and top(target) not in ALLOWED[top(name)]
    )
    assert wrong == []


def test_no_module_imports_itself_back() -> None:
    edges = graph()
    circles = []
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        for target in sorted(edges[name]):
            if state.get(target) == "open":
                circles.append(" -> ".join([*path[path.index(target):], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[name] = "done"

    for name in sorted(edges):
        if name not in state:
            visit(name, [name])
    assert circles == []


def test_the_check_sees_imports() -> None:
    """The rule is not vacuous: the entry script is seen importing every layer."""
    assert {top(target) for target in graph()["server"]} >= {"handlers", "web", "store", "protocol"}
