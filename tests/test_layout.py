"""The code's shape: imports go one way, the walls between rooms hold, and every module imports
on its own."""
import ast
import os
import subprocess
import sys

import pytest
from conftest import ROOT

MODULES = sorted(name[:-3] for name in os.listdir(ROOT) if name.endswith(".py"))
# Lower layers never import upper ones: the graph and data code knows nothing of runs or scripts.
LAYERS = [{"config", "latent", "outputs", "fetching", "mlpreprocess", "model", "classifier", "metrics"},
          {"runs", "sampling", "training", "evaluate", "compare", "export", "explore"},
          {"main1", "reference", "bench"}]
# Walls within and across the layers: {module: modules it must never import, and why}.
NEVER_IMPORTS = {
    # The instrument never depends on what it measures: it scores images, it restores no run.
    "classifier": ({"model", "runs", "sampling", "training", "evaluate", "mlpreprocess"},
                   "the classifier has layers of its own"),
    "metrics": ({"model", "runs", "sampling", "training", "evaluate"}, "scoring takes images, not runs"),
    # The comparison tables read metrics.csv files (and the instruments' manifest, through classifier's
    # reader, for their floors); they restore and score nothing.
    "compare": ({"model", "sampling", "training", "metrics", "evaluate"}, "tables read files only"),
    # The graph knows nothing of files, runs or outputs.
    "model": ({"runs", "sampling", "training", "outputs", "mlpreprocess", "fetching"}, "model.py builds graphs only"),
    "mlpreprocess": ({"model", "runs", "sampling"}, "readers know nothing of runs"),
    "fetching": ({"mlpreprocess", "model", "runs"}, "fetching knows nothing of readers or runs"),
    # The page shows the generator; it trains, scores and exports nothing.
    "explore": ({"training", "evaluate", "metrics", "classifier", "export"}, "the page only draws samples"),
}
# Outbound connections (downloads) only in fetching.py; a server only in explore.py, the local page.
CLIENT_MODULES = {"socket", "http.client", "urllib.request", "requests", "ssl"}
SERVER_MODULES = {"http.server", "socketserver"}


def parse(module):
    with open(os.path.join(ROOT, module + ".py")) as stream:
        return ast.parse(stream.read())


def all_imports(module, full_names=False):
    """{imported module: line} for every import statement in a module, at any depth; the
    top-level package unless `full_names`."""
    found = {}
    for node in ast.walk(parse(module)):
        names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                 else [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
        for name in names:
            found.setdefault(name if full_names else name.split(".")[0], node.lineno)
    return found


def local_imports(module):
    """{imported project module: line} for every import of this project's modules."""
    return {name: line for name, line in all_imports(module).items() if name in MODULES}


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


@pytest.mark.parametrize("module", sorted(NEVER_IMPORTS))
def test_the_walls_between_rooms_hold(module):
    forbidden, reason = NEVER_IMPORTS[module]
    crossing = {name: line for name, line in local_imports(module).items() if name in forbidden}
    assert not crossing, f"{module}.py imports {crossing} ({reason})"


def test_only_the_fetching_module_opens_connections_and_only_the_page_serves():
    for module in MODULES:
        imported = all_imports(module, full_names=True)
        clients = {name: line for name, line in imported.items() if name in CLIENT_MODULES}
        servers = {name: line for name, line in imported.items() if name in SERVER_MODULES}
        assert module == "fetching" or not clients, f"{module}.py imports {clients}: downloads belong in fetching.py"
        assert module == "explore" or not servers, f"{module}.py imports {servers}: serving belongs in explore.py"
    assert "urllib.request" in all_imports("fetching", full_names=True)
    assert "http.server" in all_imports("explore", full_names=True)


def test_the_model_module_reads_no_file_and_runs_no_session():
    calls = [node for node in ast.walk(parse("model")) if isinstance(node, ast.Call)]
    names = {node.func.id if isinstance(node.func, ast.Name) else node.func.attr
             for node in calls if isinstance(node.func, (ast.Name, ast.Attribute))}
    assert not names & {"open", "run", "Session", "load_checkpoint", "save", "restore"}, names


def test_every_module_imports_alone():
    # One fresh interpreter per module (started together: most of the time is TensorFlow's import).
    processes = {module: subprocess.Popen([sys.executable, "-c", f"import {module}"], cwd=ROOT,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for module in MODULES}
    for module, process in processes.items():
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, f"{module}: {stderr[-500:]}"
