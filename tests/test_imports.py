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
# the repository's folders and the import names they are installed under
PACKAGES = {
    "layers": "refnet.layers",
    "data": "refnet.data",
    "refnet": "refnet",
    "verify": "refnet.verify",
    "bench": "refnet.bench",
}
FRAMEWORKS = ("torch", "jax", "jaxlib", "onnxruntime", "tensorflow")


def modules():
    """{module name: path} of every module of the project's packages."""
    out = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):  # subpackages, not the links
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            parts = package.split(".") + list(parts[:-1] if parts[-1] == "__init__" else parts)
            out[".".join(parts)] = path
    return out


def part(name):
    """The folder a module of ours lives in: ``refnet.layers.conv`` -> "layers",
    ``refnet`` and its own modules -> "refnet"; None for another package's."""
    for folder, package in PACKAGES.items():
        if folder != "refnet" and (name == package or name.startswith(package + ".")):
            return folder
    return "refnet" if name == "refnet" or name.startswith("refnet.") else None


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
    for node in outside_functions(tree) if module_level else ast.walk(tree):
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
    bad = {
        name: sorted(n for n in deps if part(n) in TOOLS or n.split(".")[0] in FRAMEWORKS)
        for name, deps in GRAPH.items()
        if part(name) == package
    }
    assert not {k: v for k, v in bad.items() if v}


def test_layers_import_nothing_of_ours_but_layers_and_data_not_refnet():
    for name, deps in GRAPH.items():
        parts = {part(n) for n in deps} - {None}
        if part(name) == "layers":
            assert parts <= {"layers"}, (name, deps)
        if part(name) == "data":
            assert parts <= {"layers", "data"}, (name, deps)


def test_no_import_cycle():
    """Depth-first search over the module graph (a package imports its __init__ too)."""
    graph = {name: {d for d in deps if d in GRAPH and d != name} for name, deps in GRAPH.items()}
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in graph[node]:
            if state.get(nxt) == "open":
                cycle = path[path.index(nxt) :] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
