"""The package follows the data flow, and nothing imports to the right of itself.

spec/cases (``matrix``) -> ``reference`` -> ``fixtures`` -> ``onnx`` (the ONNX export) -> ``adapters`` -> ``verdict``
-> ``results`` -> ``report`` -> the pytest plugin -> ``commands``. Imports inside
functions count: a lazy import to the right is still a dependency to the right.
"""

from __future__ import annotations

import ast
from pathlib import Path

import conformance

PACKAGE = Path(conformance.__file__).parent

# Left to right; a module may import its own stage and the stages left of it.
FLOW = (
    ("conformance.files", "conformance.caches", "conformance.jsonsafe", "conformance.renamed", "conformance.matrix"),
    ("conformance.semantics",),
    ("conformance.reference",),
    ("conformance.fixtures",),
    ("conformance.onnx",),
    ("conformance.adapters",),
    ("conformance.verdict",),
    ("conformance.results",),
    ("conformance.report",),
    ("conformance.api",),
    ("conformance.plugin", "conformance.test_conformance"),
    ("conformance.commands", "conformance.__main__"),
)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def stage(module: str) -> int | None:
    for index, prefixes in enumerate(FLOW):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return index
    return None


def imported_modules(path: Path) -> set[str]:
    """Every ``conformance`` module this file imports, anywhere in it."""
    known = {module_name(p) for p in PACKAGE.rglob("*.py")}
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # "from package import submodule" depends on the submodule, not the package's __init__
            submodules = {f"{node.module}.{alias.name}" for alias in node.names} & known
            found |= submodules if len(submodules) == len(node.names) else {node.module, *submodules}
    return {m for m in found if m in known and m not in ("conformance", module_name(path))}


def import_graph() -> dict[str, set[str]]:
    return {module_name(p): imported_modules(p) for p in PACKAGE.rglob("*.py")}


def test_every_module_has_a_place_in_the_flow():
    assert [m for m in import_graph() if m != "conformance" and stage(m) is None] == []


def test_no_module_imports_to_the_right_of_itself():
    backwards = [f"{module} (stage {stage(module)}) imports {target} (stage {stage(target)})"
                 for module, targets in import_graph().items() if module != "conformance"
                 for target in targets if stage(target) > stage(module)]
    assert backwards == []


def test_no_import_cycles():
    graph = {m: {t for t in targets if not m.startswith(t + ".")} for m, targets in import_graph().items()}
    cycles, state = [], {}

    def visit(module, path):
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                cycles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []
