"""The shape of the package, as README's Architecture section states it: no import cycles,
the runner subprocess never reaches the HTTP layer, the OS is chosen in one place.

Imports are read from the source (every ``import`` statement, function-level ones included;
only those under ``if TYPE_CHECKING:`` are left out, since they never run), so a cycle hidden
behind a function-level import fails here as well.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import ollamactl

PACKAGE = Path(ollamactl.__file__).parent
RUNNER = "ollamactl.runtime.runner"
HTTP = "ollamactl.runtime.http"
WEB_LIBRARIES = ("fastapi", "starlette", "pydantic", "uvicorn")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _runtime_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """Import statements that run: everything but the bodies of ``if TYPE_CHECKING:``."""
    def walk(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                yield from (n for b in child.orelse for n in walk_node(b))
                continue
            yield from walk_node(child)

    def walk_node(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        else:
            yield from walk(node)

    yield from walk(tree)


def imported_names(name: str) -> set[str]:
    """Every module name the module ``name`` imports (absolute, not only ours)."""
    path = modules()[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _runtime_imports(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
            base = ".".join([*anchor, *([base] if base else [])])
        found.add(base)
        found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


@cache
def graph() -> dict[str, frozenset[str]]:
    """Our modules and the modules of ours each one imports."""
    ours = modules()
    return {name: frozenset(n for n in imported_names(name) if n in ours and n != name)
            for name in ours}


def cycles(edges: dict[str, frozenset[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def reachable(start: str, edges: dict[str, frozenset[str]]) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(edges.get(node, ()))
    return seen


def test_the_import_graph_has_no_cycles() -> None:
    assert cycles(graph()) == []


def test_the_cycle_finder_finds_a_cycle_behind_a_function_level_import(tmp_path: Path) -> None:
    """The check itself: a function-level import closing a loop counts; a TYPE_CHECKING one
    does not."""
    a = "from x import b\n\ndef f():\n    from x import c\n"
    tree = ast.parse(a)
    names = [n.module for n in _runtime_imports(tree) if isinstance(n, ast.ImportFrom)]
    assert names == ["x", "x"]
    guarded = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from x import c\n"
    assert [n for n in _runtime_imports(ast.parse(guarded))
            if isinstance(n, ast.ImportFrom) and n.module == "x"] == []
    edges = {"a": frozenset({"b"}), "b": frozenset({"c"}), "c": frozenset({"a"}),
             "d": frozenset({"a"})}
    assert cycles(edges) == [["a", "b", "c"]]


def test_the_runner_package_never_reaches_the_http_layer() -> None:
    runner_modules = [name for name in modules() if name.startswith(RUNNER)]
    assert runner_modules, f"no {RUNNER} package"
    edges = graph()
    reached = set().union(*(reachable(name, edges) for name in runner_modules))
    assert sorted(name for name in reached if name.startswith(HTTP)) == []
    third_party = {n.split(".")[0] for name in reached for n in imported_names(name)}
    assert third_party.isdisjoint(WEB_LIBRARIES)


def test_a_runner_process_loads_no_web_framework() -> None:
    """What the source says, checked in a fresh interpreter as the runner starts."""
    code = (f"import sys, {RUNNER}.main\n"
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({WEB_LIBRARIES!r})))")
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]"


#: Where no per-OS branch may be: these ask the platform unit (ollamactl.service) instead.
OS_NEUTRAL = ("ollamactl.install", "ollamactl.doctor", "ollamactl.cli", "ollamactl.settings")
OS_FACTS = {"os_name", "has_systemd", "init_system", "LINUX", "DARWIN", "WINDOWS"}


def os_questions(name: str) -> list[str]:
    """Where module ``name`` reads which OS or init system this is."""
    path = modules()[name]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        used = node.attr if isinstance(node, ast.Attribute) else \
            node.id if isinstance(node, ast.Name) else None
        if used in OS_FACTS:
            found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {used}")
    return found


def test_install_doctor_cli_and_settings_never_ask_which_os() -> None:
    asked = [line for name in modules() if name.startswith(OS_NEUTRAL)
             for line in os_questions(name)]
    assert asked == []


def test_the_os_question_finder_sees_both_spellings() -> None:
    tree = "if ctx.host.os_name == LINUX or host.has_systemd:\n    pass\n"
    names = {n.attr if isinstance(n, ast.Attribute) else n.id for n in ast.walk(ast.parse(tree))
             if isinstance(n, (ast.Attribute, ast.Name))}
    assert {"os_name", "LINUX", "has_systemd"} <= names & OS_FACTS
