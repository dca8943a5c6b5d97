"""The house rules a learner relies on, measured on the source (with ast):

- imports run one way: engine/ (the array machinery) imports nothing from the layers,
  the model, the data pipeline or training; nothing but the tests imports train.py;
- no import cycles among the project's modules;
- train.py is a thin command line, and no function outside the tests is longer than
  a screen and a half (80 lines).
"""
import ast
import os

from tests.conftest import ROOT

PACKAGES = ("engine", "layers", "data", "training", "experiments", "bench", "scripts",
            "notebooks")
TOP_MODULES = ("alexnet", "train", "gradcheck")


def project_files():
    """(module name, path) of every project .py file outside tests/."""
    found = []
    for top in TOP_MODULES:
        path = os.path.join(ROOT, top + ".py")
        if os.path.isfile(path):
            found.append((top, path))
    for package in PACKAGES:
        for folder, _, files in os.walk(os.path.join(ROOT, package)):
            for name in sorted(files):
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                    found.append((rel.removesuffix(".__init__"), path))
    return found


def imports_of(path):
    """Every module name ``path`` imports, anywhere in the file (the project has no
    relative imports)."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: a relative import"
            base = node.module
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
    return names


def project_graph():
    modules = dict(project_files())
    graph = {}
    for module, path in modules.items():
        graph[module] = {m for m in imports_of(path) if m in modules and m != module}
    return graph


def test_engine_imports_only_engine():
    for module, deps in project_graph().items():
        if module.startswith("engine"):
            outside = {d for d in deps if not d.startswith("engine")}
            assert not outside, f"{module} imports {sorted(outside)}"


def test_nothing_but_the_tests_imports_train_py():
    importers = [m for m, deps in project_graph().items() if "train" in deps]
    assert importers == [], importers


def test_no_import_cycles():
    graph = project_graph()
    state, cycles = {}, []

    def visit(node, path):
        state[node] = "open"
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                cycles.append(path[path.index(dep):] + [dep] if dep in path else [node, dep])
            elif dep not in state:
                visit(dep, path + [dep])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, cycles


def test_train_py_is_a_thin_command_line():
    with open(os.path.join(ROOT, "train.py"), encoding="utf-8") as f:
        assert len(f.readlines()) <= 250


def test_no_function_longer_than_80_lines():
    long = []
    for module, path in project_files():
        tree = ast.parse(open(path, encoding="utf-8").read(), path)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > 80:
                    long.append(f"{module}.{node.name}: {n} lines")
    assert not long, long
