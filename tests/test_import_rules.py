"""The package's layering, read from the source (every import statement, function-level ones included):
models/ imports torch only; data/ knows nothing of models or training; train/ knows nothing of Tune or the CLI; only
tracking/ imports mlflow."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "platform" / "fusionlab"

# numpy rebuilds the numpy scalars inside the references' checkpoints (read with weights_only=True).
MODELS_EXTRA = {"models/reference_checkpoint.py": {"numpy"}}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every module an ``import`` or ``from ... import`` anywhere in ``source`` names, relative ones resolved
    against ``module`` (a package's ``__init__`` resolves against itself)."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                found.add(".".join([*base, *([node.module] if node.module else [])]))
            else:
                found.add(node.module)
    return found


def package_imports() -> dict[str, set[str]]:
    """``{"models/cen.py": {"torch", "fusionlab.models.exchange", ...}}`` for every module of the package."""
    return {str(path.relative_to(PACKAGE)): imported_modules(path.read_text(), module_name(path),
                                                             path.name == "__init__.py")
            for path in sorted(PACKAGE.rglob("*.py"))}


def third_party(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules} - set(sys.stdlib_module_names) - {"fusionlab"}


def within(modules: set[str], *packages: str) -> set[str]:
    return {m for m in modules if any(m == p or m.startswith(p + ".") for p in packages)}


IMPORTS = package_imports()


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
