"""The plan of the house, enforced: imports run one way (services and flows -> library; inside
the library from the composition layer down to the foundations), only the gRPC layer and
the services touch grpc or the generated code, and no module imports itself back through
any chain of imports (module-level and function-level imports alike)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from lenscal.rpc.service import SERVICES

from .conftest import REPO

LIBRARY = REPO / "shared" / "lenscal"
OUTER = {  # packages outside the library: the gRPC services of lenscal.rpc.service's table,
    # the trainer image's entry point and the flows
    **{s.package: REPO / "services" / name / s.package for name, s in SERVICES.items()},
    "lenscal_trainer": REPO / "services" / "trainer" / "lenscal_trainer",
    "lenscal_flows": REPO / "flows" / "lenscal_flows",
}
#: Library layers, low to high: a module may import its own layer or lower ones only.
LAYERS = (
    {
        "errors",
        "survey",
        "fsutil",
        "home",
        "progress",
        "rng",
        "validation",
        "device",
        "plotting",
        "logs",
        "command",
        "workspace",
        "lifeline",
        "security",
    },
    {"preprocess", "preprocess_spec", "bundle_files", "stats", "data", "physics"},
    {"models", "injection", "registry"},
    {"scoring", "training", "evaluation", "mock", "selection", "diagnostics", "ui"},
    {"rpc"},
    {"backends", "jobs", "demo", "commands", "cli"},  # composition: implementations, jobs, commands
)
GRPC_ROOTS = ("grpc", "grpc_health", "grpc_reflection", "lenscal_pb")


def _modules(root: Path, package: str) -> dict[str, Path]:
    found = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if "migrations" in parts:
            continue
        found[".".join([package, *parts])] = path
    return found


MODULES = {**_modules(LIBRARY, "lenscal")}
for _name, _root in OUTER.items():
    MODULES.update(_modules(_root, _name))


def _imports(name: str, path: Path) -> set[str]:
    """Every module ``name`` imports, anywhere in the file (relative imports resolved)."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join([*parent, base] if base else parent)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in MODULES else base)
    return found


IMPORTS = {name: _imports(name, path) for name, path in MODULES.items()}


def _layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1:
        return 0  # the package root (version only)
    for index, names in enumerate(LAYERS):
        if parts[1] in names:
            return index
    raise AssertionError(f"{module}: its package {parts[1]!r} is in no layer of this test; add it")


def test_the_library_never_imports_services_or_flows() -> None:
    bad = [
        f"{m} imports {i}"
        for m, imported in IMPORTS.items()
        if m.startswith("lenscal.") or m == "lenscal"
        for i in imported
        if i.split(".")[0] in OUTER
    ]
    assert not bad, bad


def test_only_the_grpc_layer_and_services_touch_grpc() -> None:
    allowed = ("lenscal.rpc", *OUTER)
    bad = [
        f"{m} imports {i}"
        for m, imported in IMPORTS.items()
        for i in imported
        if i.split(".")[0] in GRPC_ROOTS and not m.startswith(allowed)
    ]
    assert not bad, bad


def test_domain_code_reaches_the_grpc_layer_only_through_the_composition_layer() -> None:
    bad = [
        f"{m} imports {i}"
        for m, imported in IMPORTS.items()
        if m.startswith("lenscal.") and not m.startswith("lenscal.rpc")
        for i in imported
        if i.startswith("lenscal.rpc") and _layer(m) < len(LAYERS) - 1
    ]
    assert not bad, bad


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("lenscal.")))
def test_library_imports_point_down_the_layers(module: str) -> None:
    upward = [
        f"{i} (layer {_layer(i)})"
        for i in IMPORTS[module]
        if i.startswith("lenscal.") and i in MODULES and _layer(i) > _layer(module)
    ]
    assert not upward, f"{module} (layer {_layer(module)}) imports {upward}"


def test_no_import_cycles() -> None:
    graph = {m: {i for i in imported if i in MODULES and i != m} for m, imported in IMPORTS.items()}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_the_checks_see_real_imports() -> None:
    # Guards against a parser that finds nothing (which would make every test above pass).
    assert "lenscal.scoring.core" in IMPORTS["lenscal_scorer.servicer"]
    assert "lenscal.preprocess_spec" in IMPORTS["lenscal.scoring.core"]
    assert any(i.startswith("grpc") for i in IMPORTS["lenscal.rpc.status"])


def test_every_service_package_exists() -> None:
    for name, spec in SERVICES.items():
        assert (OUTER[spec.package] / "__init__.py").is_file(), name
        assert (REPO / "proto" / spec.proto).is_file(), spec.proto
