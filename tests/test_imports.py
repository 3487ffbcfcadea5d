"""The package's direction of dependence, read from the source: no import cycle, and the
library (layers/, data/, refnet/) imports neither its tools (verify/, bench/) nor a
framework. Imports are collected with ``ast`` from every statement, inside functions too,
so a lazy import counts the same as one at the top."""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
LIBRARY = ("layers", "data", "refnet")
TOOLS = ("verify", "bench")
FRAMEWORKS = ("torch", "jax", "jaxlib", "onnxruntime", "tensorflow")


def modules():
    """{module name: path} of every module of the project's packages."""
    out = {}
    for package in LIBRARY + TOOLS:
        for path in sorted((ROOT / package).rglob("*.py")):   # subpackages too
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def outside_functions(tree):
    """The nodes of ``tree`` that are not inside a function or lambda body."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            todo.extend(ast.iter_child_nodes(node))


def imports(path, known, module_level=False):
    """What ``path`` imports: the project's modules it names (``from refnet import SGD``
    names the package ``refnet``, ``from refnet import sgd`` the module ``refnet.sgd``)
    and the top-level names of other packages; with ``module_level``, only the imports
    outside function bodies."""
    found = set()
    tree = ast.parse(path.read_text())
    for node in (outside_functions(tree) if module_level else ast.walk(tree)):
        if isinstance(node, ast.Import):
            for a in node.names:
                found.add(a.name if a.name in known else a.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module not in known:
                found.add(node.module.split(".")[0])
                continue
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                found.add(sub if sub in known else node.module)
    return found


GRAPH = {name: imports(path, modules()) for name, path in modules().items()}


@pytest.mark.parametrize("package", LIBRARY)
def test_the_library_imports_no_tool_and_no_framework(package):
    bad = {name: sorted(n for n in deps if n.split(".")[0] in TOOLS + FRAMEWORKS)
           for name, deps in GRAPH.items() if name.split(".")[0] == package}
    assert not {k: v for k, v in bad.items() if v}


def test_layers_import_nothing_of_ours_but_layers_and_data_not_refnet():
    for name, deps in GRAPH.items():
        top = {n.split(".")[0] for n in deps}
        if name.startswith("layers"):
            assert not top & {"data", "refnet", *TOOLS}, name
        if name.startswith("data"):
            assert not top & {"refnet", *TOOLS}, name


def test_no_import_cycle():
    """Depth-first search over the module graph (a package imports its __init__ too)."""
    graph = {name: {d for d in deps if d in GRAPH and d != name} for name, deps in GRAPH.items()}
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in graph[node]:
            if state.get(nxt) == "open":
                cycle = path[path.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
