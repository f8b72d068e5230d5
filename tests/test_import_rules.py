"""The package's layering, read from the source (every import statement, function-level ones included): each part of
fusionlab imports only the parts its row of ``ALLOWED`` names, the parts import each other one way (no circle of
packages), and no module circle lies inside a package; models/ imports torch only; data/ knows nothing of models or
training; train/ knows nothing of Tune or the CLI; only tracking/ imports mlflow."""

from __future__ import annotations

import ast
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "platform" / "fusionlab"

# numpy rebuilds the numpy scalars inside the references' checkpoints (read with weights_only=True).
MODELS_EXTRA = {"models/reference_checkpoint.py": {"numpy"}}

# Leaf utilities: top-level modules that import no package of fusionlab (only each other), so every part may import
# them: errors (FusionlabError), names (display and folder names), staging (write a directory, then move it into
# place), torch_files (the one torch.load, weights_only=True), credentials (secrets kept out of recorded URIs).
LEAVES = frozenset({"errors", "names", "staging", "torch_files", "credentials"})
# Which parts of fusionlab each part may import, besides itself and the leaves: one row per subpackage and per
# top-level module (a new one fails test_every_part_has_a_row until it is given one). One way: no part reaches back.
ALLOWED: dict[str, frozenset[str]] = {
    **{leaf: frozenset() for leaf in LEAVES},
    "__init__": frozenset(),  # fusionlab/__init__.py: the version
    "models": frozenset(),  # torch only (test_models_import_torch_only)
    "data": frozenset(),  # datasets: manifests, shards, readers, synthetic data; no models, no training
    "fid": frozenset(),  # FID/KID and their feature extractors
    "config": frozenset({"models"}),  # the pure schema: validates a model's name and params; reads no dataset
    "inference": frozenset({"data", "models"}),  # a model as served (servable), its inputs and outputs
    "tracking": frozenset({"config", "data", "models", "fid"}),  # MLflow: runs, registry, reports
    "train": frozenset({"config", "data", "models", "fid", "inference", "tracking"}),
    # A grid's and a sweep's launch also reads dataset facts (sizes, verification) and model costs (FLOPs, memory).
    "tune": frozenset({"config", "data", "models", "train", "tracking"}),
    # fusionlab import-checkpoint: a reference checkpoint built, scored and logged as a run
    "checkpoint_import": frozenset({"config", "data", "inference", "models", "tracking", "train"}),
}
ALLOWED["cli"] = frozenset(ALLOWED) - {"cli"}  # the CLI wires them all


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every module an ``import`` or ``from ... import`` anywhere in ``source`` names, relative ones resolved
    against ``module`` (a package's ``__init__`` resolves against itself)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            found.add(from_module(node, module, is_package))
    return found


def from_module(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The module a ``from ... import`` names, a relative one resolved against ``module``."""
    if not node.level:
        return node.module
    package = module.split(".") if is_package else module.split(".")[:-1]
    return ".".join([*package[: len(package) - node.level + 1], *([node.module] if node.module else [])])


def package_imports() -> dict[str, set[str]]:
    """``{"models/cen.py": {"torch", "fusionlab.models.exchange", ...}}`` for every module of the package."""
    return {str(path.relative_to(PACKAGE)): imported_modules(path.read_text(), module_name(path),
                                                             path.name == "__init__.py")
            for path in sorted(PACKAGE.rglob("*.py"))}


def third_party(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules} - set(sys.stdlib_module_names) - {"fusionlab"}


def within(modules: set[str], *packages: str) -> set[str]:
    return {m for m in modules if any(m == p or m.startswith(p + ".") for p in packages)}


def part_of(module: str) -> str:
    """The part of fusionlab (``ALLOWED``'s key) a module belongs to: ``fusionlab.train.loop`` -> ``train``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def module_targets(source: str, module: str, is_package: bool, modules: set[str]) -> set[str]:
    """The fusionlab modules an import anywhere in ``source`` loads for its names: ``from package import submodule``
    is the submodule, ``from package import name`` the package's ``__init__``; relative ones resolved as
    ``imported_modules`` does."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = from_module(node, module, is_package) or ""
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {name for name in found if name in modules}


def module_graph() -> dict[str, set[str]]:
    """``{"fusionlab.train.loop": {"fusionlab.config", "fusionlab.train.context", ...}}``: every module of the package
    and the fusionlab modules it imports (function-level imports included)."""
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(path) for path in paths}
    return {module_name(path): module_targets(path.read_text(), module_name(path), path.name == "__init__.py",
                                              modules) - {module_name(path)}
            for path in paths}


def forbidden_imports(graph: Mapping[str, set[str]]) -> list[str]:
    """Each import of a part of fusionlab that the importer's row of ``ALLOWED`` does not name."""
    found = []
    for module, targets in sorted(graph.items()):
        part = part_of(module)
        for target in sorted(targets):
            if part_of(target) not in {part, *LEAVES, *ALLOWED.get(part, ())}:
                found.append(f"{module} imports {target}: {part} may import "
                             f"{', '.join(sorted(ALLOWED.get(part, ()))) or 'no other part'} (and the leaves)")
    return found


def find_cycle(edges: Mapping[str, set[str]]) -> list[str] | None:
    """One circle of ``edges`` (``[a, b, a]``), or None where they are one way."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == "open":
                return [*path[path.index(target):], target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        state[node] = "done"
        path.pop()
        return None

    for node in sorted(edges):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def part_graph(graph: Mapping[str, set[str]]) -> dict[str, set[str]]:
    """The parts of fusionlab and the other parts they import."""
    parts: dict[str, set[str]] = {}
    for module, targets in graph.items():
        parts.setdefault(part_of(module), set()).update(part_of(t) for t in targets if part_of(t) != part_of(module))
    return parts


def module_cycles_within_parts(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """A circle of modules inside each part that has one (``config.sections`` <-> ``config.params``)."""
    cycles = []
    for part in sorted({part_of(module) for module in graph}):
        inside = {module: {t for t in targets if part_of(t) == part}
                  for module, targets in graph.items() if part_of(module) == part}
        cycle = find_cycle(inside)
        if cycle:
            cycles.append(cycle)
    return cycles


IMPORTS = package_imports()
GRAPH = module_graph()


def test_the_scanner_sees_function_level_and_relative_imports():
    source = "import torch\ndef f():\n    from mlflow import MlflowClient\n    from ..train import loop\n"
    assert imported_modules(source, "fusionlab.models.cen") == {"torch", "mlflow", "fusionlab.train"}
    assert imported_modules("from . import zoo", "fusionlab.models", is_package=True) == {"fusionlab.models"}
    assert len(IMPORTS) > 50 and "models/cen.py" in IMPORTS


@pytest.mark.parametrize("path", [p for p in IMPORTS if p.startswith("models/")])
def test_models_import_torch_only(path):
    modules = IMPORTS[path]
    assert third_party(modules) <= {"torch", *MODELS_EXTRA.get(path, ())}, path
    # fusionlab.torch_files: the one torch.load (weights_only=True), itself importing torch and errors only
    assert within(modules, "fusionlab") <= within(modules, "fusionlab.models", "fusionlab.errors",
                                                  "fusionlab.torch_files"), path


def test_torch_files_imports_torch_and_errors_only():
    modules = IMPORTS["torch_files.py"]
    assert third_party(modules) <= {"torch"} and within(modules, "fusionlab") <= {"fusionlab.errors"}


@pytest.mark.parametrize("path", [p for p in IMPORTS if p.startswith("data/")])
def test_data_knows_nothing_of_models_or_training(path):
    assert not within(IMPORTS[path], "fusionlab.models", "fusionlab.train", "fusionlab.tune", "fusionlab.tracking",
                      "fusionlab.cli", "fusionlab.inference", "mlflow", "optuna"), path


@pytest.mark.parametrize("path", [p for p in IMPORTS if p.startswith("train/")])
def test_train_knows_nothing_of_tune_or_the_cli(path):
    assert not within(IMPORTS[path], "ray.tune", "optuna", "fusionlab.tune", "fusionlab.cli"), path


def test_only_tracking_imports_mlflow():
    importers = sorted(path for path, modules in IMPORTS.items()
                       if within(modules, "mlflow") and not path.startswith("tracking/"))
    assert importers == []


def test_every_part_has_a_row():
    assert {part_of(module) for module in GRAPH} == set(ALLOWED)


def test_the_allowed_imports_are_one_way():
    assert find_cycle({part: set(allowed) for part, allowed in ALLOWED.items()}) is None
    assert all(not ALLOWED[leaf] for leaf in LEAVES)


def test_every_import_of_a_part_is_allowed():
    forbidden = forbidden_imports(GRAPH)
    assert not forbidden, "imports against ALLOWED:\n" + "\n".join(forbidden)


def test_no_circle_of_parts():
    cycle = find_cycle(part_graph(GRAPH))
    assert cycle is None, "parts import each other in a circle: " + " -> ".join(cycle)


def test_no_circle_of_modules_inside_a_part():
    cycles = module_cycles_within_parts(GRAPH)
    assert not cycles, "modules import each other in a circle:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_checks_fail_on_a_forbidden_import_and_a_circle():
    """A function-level import of train in tracking (as tracking/lifecycle.py once had) is reported and closes a circle
    of parts; config/types.py importing the sections it is the leaf of closes a circle inside config."""
    source = "def f():\n    from fusionlab.train.failures import worker_cause\n"
    targets = module_targets(source, "fusionlab.tracking.lifecycle", False, set(GRAPH))
    assert targets == {"fusionlab.train.failures"}
    base = {**GRAPH, "fusionlab.tracking.lifecycle": GRAPH["fusionlab.tracking.lifecycle"] - targets}
    graph = {**base, "fusionlab.tracking.lifecycle": base["fusionlab.tracking.lifecycle"] | targets}
    assert set(forbidden_imports(graph)) - set(forbidden_imports(base)) == {
        "fusionlab.tracking.lifecycle imports fusionlab.train.failures: tracking may import config, data, fid, models "
        "(and the leaves)"}
    cycle = find_cycle(part_graph(graph))  # train imports tracking
    assert cycle is not None and {"tracking", "train"} <= set(cycle)
    graph = {**GRAPH, "fusionlab.config.types": GRAPH["fusionlab.config.types"] | {"fusionlab.config.sections"}}
    (cycle,) = [cycle for cycle in module_cycles_within_parts(graph) if "fusionlab.config.types" in cycle]
    assert cycle[0] == cycle[-1] and "fusionlab.config.sections" in cycle
    assert module_targets("from . import store\nfrom .tags import KIND_TAG\n", "fusionlab.tracking.runs", False,
                          set(GRAPH)) == {"fusionlab.tracking.store", "fusionlab.tracking.tags"}
