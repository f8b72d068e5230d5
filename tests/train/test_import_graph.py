"""No module of fusionlab/train imports, directly or through other train modules, a module that imports it back:
every import counts, the ones inside functions included (an AST scan, nothing is imported)."""

import ast
from pathlib import Path

import fusionlab.train

PACKAGE = "fusionlab.train"
TRAIN = Path(fusionlab.train.__file__).parent


def imported_modules(source: str, modules: set[str]) -> set[str]:
    """The package's ``modules`` that ``source`` imports anywhere in its body (``from .x import y``,
    ``from . import x``, ``from fusionlab.train.x import y``, ``import fusionlab.train.x``)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level <= 1:
            module = ".".join(filter(None, [PACKAGE if node.level == 1 else None, node.module]))
            names = [module, *(f"{module}.{alias.name}" for alias in node.names)]
        else:
            continue
        for name in names:
            if name.startswith(f"{PACKAGE}."):
                head = name.removeprefix(f"{PACKAGE}.").split(".")[0]
                if head in modules:
                    found.add(head)
    return found


def import_graph(package: Path) -> dict[str, set[str]]:
    modules = {path.stem for path in package.glob("*.py") if path.stem != "__init__"}
    return {name: imported_modules((package / f"{name}.py").read_text(), modules) for name in sorted(modules)}


def cycle_through(graph: dict[str, set[str]], start: str) -> list[str] | None:
    """A path start -> ... -> start, or None."""
    stack, seen = [(start, [start])], set()
    while stack:
        module, path = stack.pop()
        for imported in sorted(graph[module]):
            if imported == start:
                return [*path, start]
            if imported not in seen:
                seen.add(imported)
                stack.append((imported, [*path, imported]))
    return None


def test_no_train_module_imports_a_module_that_imports_it_back():
    graph = import_graph(TRAIN)
    assert {"task", "steps"} <= graph["loop"], "the scan sees the loop's imports"
    assert "translation_task" in graph["task"] and "evaluate" in graph["segmentation_task"], \
        "function-level imports are seen too"
    cycles = {module: cycle for module in graph if (cycle := cycle_through(graph, module))}
    assert not cycles, "\n".join(" -> ".join(cycle) for cycle in cycles.values())


def test_the_shared_steps_import_no_loop_or_task_module():
    assert not import_graph(TRAIN)["steps"] & {"loop", "task", "segmentation_task", "translation_task",
                                               "translation"}


def test_the_scan_finds_a_cycle_made_by_a_function_level_import(tmp_path):
    (tmp_path / "__init__.py").write_text("")
    (tmp_path / "a.py").write_text("from .b import thing\n")
    (tmp_path / "b.py").write_text("def thing():\n    from fusionlab.train import a\n    return a\n")
    (tmp_path / "c.py").write_text("import fusionlab.train.a\nfrom fusionlab.data import Manifest\n")
    graph = import_graph(tmp_path)
    assert graph == {"a": {"b"}, "b": {"a"}, "c": {"a"}}
    assert cycle_through(graph, "a") == ["a", "b", "a"] and cycle_through(graph, "c") is None
