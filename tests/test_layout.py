"""The house a newcomer reads: folders are layers, imports only go down, functions stay short.

`apikeys/` is built in layers (docs/architecture.md): the doors on top, the door helpers, the
operations, what and how for Keycloak and for partners' credentials, the ground. These tests
read the source (no import of it): a change that makes an import run upwards, closes a
circle, or grows a function past 60 lines fails here with the place to look.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# apikeys/ from the top down; a module may import its own layer or those below it.
LAYERS = [
    {"urls"},
    {"views", "api", "management", "templatetags", "apps"},
    {"forms", "access", "assurance", "limits"},
    {"operations"},
    {"keycloak", "credentials"},
    {"models", "migrations", "http", "client_address", "observability", "crash_points"},
]
LONGEST_CHAIN = 7  # imports in a row between apikeys' modules, e.g. urls -> ... -> models
LONGEST_FUNCTION = 60  # lines, outside tests, benchmarks and migrations
PACKAGES = {  # the project's Python, by the name it is imported as
    "apikeys": ROOT / "apikeys",
    "portal": ROOT / "portal",
    "devstack": ROOT / "devstack",
    "bench": ROOT / "bench",
    "tests": ROOT / "tests",
    "apikeys_cli": ROOT / "cli" / "src" / "apikeys_cli",
}


def _modules() -> dict[str, Path]:
    found = {}
    for name, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = [name, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(module: str) -> set[str]:
    """The project modules `module` imports, anywhere in it (lazy imports count too)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    named: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            named |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            named.add(base)
            named |= {f"{base}.{alias.name}" for alias in node.names}
    return {m for name in named if (m := _known(name)) and m != module}


def _known(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


GRAPH = {module: _imports(module) for module in MODULES}


def _layer(module: str) -> int:
    top = module.split(".")[1] if module.count(".") else ""
    for depth, names in enumerate(LAYERS):
        if top in names:
            return depth
    raise AssertionError(f"{module} is in no layer: put it in one (LAYERS, docs/architecture.md)")


def _app_modules() -> list[str]:
    return sorted(m for m in MODULES if m.startswith("apikeys.") and ".migrations" not in m)


def test_every_module_of_the_app_has_a_layer() -> None:
    for module in _app_modules():
        _layer(module)


def test_imports_only_go_down_the_layers() -> None:
    upward = [
        f"{module} ({_layer(module)}) imports {target} ({_layer(target)})"
        for module in _app_modules()
        for target in GRAPH[module]
        if target.startswith("apikeys.") and _layer(target) < _layer(module)
    ]
    assert not upward, "\n".join(upward)


def test_no_two_modules_import_each_other_anywhere() -> None:
    circles = _circles()
    assert not circles, "\n".join(" -> ".join(circle) for circle in circles)


def test_the_longest_chain_of_imports_in_the_app_is_short() -> None:
    app = {m: {t for t in GRAPH[m] if t.startswith("apikeys.")} for m in _app_modules()}
    longest: dict[str, list[str]] = {}

    def chain(module: str) -> list[str]:
        if module not in longest:
            longest[module] = [module]  # a circle is caught by the test above
            below = [chain(target) for target in app[module]]
            longest[module] = [module, *max(below, key=len, default=[])]
        return longest[module]

    worst = max((chain(m) for m in app), key=len)
    assert len(worst) - 1 <= LONGEST_CHAIN, " -> ".join(worst)


def test_no_function_outside_tests_and_benchmarks_is_long() -> None:
    long = [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)"
        for path, node, lines in _functions()
        if lines > LONGEST_FUNCTION
    ]
    assert not long, "\n".join(long)


@pytest.mark.parametrize("marker", ["# fmt: skip", "noqa: E402"])
def test_no_formatter_or_import_order_exceptions(marker: str) -> None:
    here = Path(__file__).resolve()
    found = [
        str(path.relative_to(ROOT))
        for path in ROOT.rglob("*.py")
        if path != here and _ours(path) and marker in path.read_text()
    ]
    assert not found


def _functions() -> Iterator[tuple[Path, ast.FunctionDef | ast.AsyncFunctionDef, int]]:
    for path in ROOT.rglob("*.py"):
        parts = set(path.relative_to(ROOT).parts)
        if not _ours(path) or parts & {"tests", "bench", "migrations"}:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                yield path, node, (node.end_lineno or node.lineno) - node.lineno + 1


def _ours(path: Path) -> bool:
    return not set(path.relative_to(ROOT).parts) & {".venv", "node_modules", "target", ".git"}


def _circles() -> list[list[str]]:
    """Strongly connected groups of modules (Tarjan), each a circle of imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in GRAPH[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                circles.append(sorted(group))

    for module in GRAPH:
        if module not in index:
            visit(module)
    return circles
