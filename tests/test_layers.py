"""The shape of the code: imports run one way, top to bottom, and no product module takes
part in an import cycle (imports inside functions count too: hiding one there is how a
cycle used to survive). See README "Map of the code"."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Top to bottom. A package may import its own modules and any package below it.
LAYERS = ["calsync", "webhook", "worker", "intake", "models", "rules", "core"]
RANK = {"calsync": 0, "webhook": 1, "worker": 1, "intake": 2, "models": 3, "rules": 4, "core": 5}
# webhook and worker stand side by side: the web process only sends work to the queue.
WEBHOOK_MAY_USE_FROM_WORKER = {
    "worker.enqueue",
    "worker.publishing",
    "worker.task_names",
    "worker.celery_app",
    "worker.queue_depth",
    "worker.rate_limit",  # the daily budget gauge reads the limiter's shared state
}
PRODUCT = set(RANK)


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    found = {}
    for package in [*PRODUCT, "emulator"]:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            found[_module_name(path)] = path
    return found


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """Every module of ours that `path` imports, anywhere in the file."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                names.add(candidate if candidate in MODULES else node.module)
    return {name for name in names if name.split(".")[0] in PRODUCT | {"emulator"}}


GRAPH = {module: _imports(path) for module, path in MODULES.items()}


def _package(module: str) -> str:
    return module.split(".")[0]


def test_every_product_package_is_known() -> None:
    assert {_package(m) for m in MODULES} == PRODUCT | {"emulator"}


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _package(m) in PRODUCT))
def test_imports_run_downwards(module: str) -> None:
    own = _package(module)
    wrong = []
    for target in sorted(GRAPH[module]):
        theirs = _package(target)
        if theirs == own:
            continue
        if theirs == "emulator":
            if own != "calsync":
                wrong.append(target)
        elif own == "webhook" and theirs == "worker":
            if target not in WEBHOOK_MAY_USE_FROM_WORKER:
                wrong.append(target)
        elif RANK[theirs] <= RANK[own]:
            wrong.append(target)
    assert not wrong, f"{module} imports upwards or sideways: {wrong}"


def test_the_emulator_imports_nothing_of_the_product() -> None:
    wrong = {
        module: sorted(t for t in targets if _package(t) != "emulator")
        for module, targets in GRAPH.items()
        if _package(module) == "emulator"
    }
    assert not {m: t for m, t in wrong.items() if t}


def test_no_import_cycles() -> None:
    # Tarjan's strongly connected components over module -> module edges.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in GRAPH.get(node, ()):
            if target not in GRAPH or _package(target) not in PRODUCT:
                continue
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
                cycles.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index and _package(module) in PRODUCT:
            visit(module)
    assert not cycles, f"import cycles: {cycles}"


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from worker import sync_engine\n")
    assert "worker.sync_engine" in _imports(bad)
