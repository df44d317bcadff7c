"""The code's shape: imports go one way, and every module imports on its own."""
import ast
import os
import subprocess
import sys

import pytest
from conftest import ROOT

MODULES = sorted(name[:-3] for name in os.listdir(ROOT) if name.endswith(".py"))
# Lower layers never import upper ones: the graph and data code knows nothing of runs or scripts.
LAYERS = [{"config", "latent", "mlpreprocess", "model", "outputs"},
          {"runs", "sampling", "evaluate", "training"},
          {"main1", "reference", "bench"}]


def local_imports(module):
    """{imported project module: line} for every import statement in a module, at any depth."""
    tree = ast.parse(open(os.path.join(ROOT, module + ".py")).read())
    found = {}
    for node in ast.walk(tree):
        names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                 else [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
        for name in names:
            if name.split(".")[0] in MODULES:
                found.setdefault(name.split(".")[0], node.lineno)
    return found


def test_every_module_is_in_a_layer():
    assert set(MODULES) == set().union(*LAYERS)


def test_the_import_graph_has_no_cycle():
    graph = {module: set(local_imports(module)) for module in MODULES}
    state = {}

    def visit(module, path):
        if state.get(module) == "done":
            return
        assert state.get(module) != "open", f"import cycle: {' -> '.join(path + [module])}"
        state[module] = "open"
        for imported in sorted(graph[module]):
            visit(imported, path + [module])
        state[module] = "done"

    for module in MODULES:
        visit(module, [])


@pytest.mark.parametrize("module", MODULES)
def test_imports_point_down_or_sideways_only(module):
    level = next(i for i, layer in enumerate(LAYERS) if module in layer)
    for imported, line in local_imports(module).items():
        imported_level = next(i for i, layer in enumerate(LAYERS) if imported in layer)
        assert imported_level <= level, f"{module}.py:{line} imports {imported}, a layer above it"
        assert imported_level < level or imported != module


def test_every_module_imports_alone():
    # One fresh interpreter per module (started together: most of the time is TensorFlow's import).
    processes = {module: subprocess.Popen([sys.executable, "-c", f"import {module}"], cwd=ROOT,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for module in MODULES}
    for module, process in processes.items():
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, f"{module}: {stderr[-500:]}"
