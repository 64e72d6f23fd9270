"""The one rule for imports in kit/ (docs/architecture.md): a layer imports only from the layers
below it, and nothing imports in a circle."""

import ast
from pathlib import Path

import kit

KIT = Path(kit.__file__).parent
# bottom to top; a subpackage is one layer, the top-level modules are named one by one
LAYERS = [
    {"errors", "paths", "files", "recipe"},
    {"evaluate"},
    {"data"},
    {"train"},
    {"runs"},
    {"kaggle"},
    {"pipeline", "resume", "ensemble", "pseudo", "distill", "inference", "new", "cli", "__init__"},
]


def module_name(path: Path) -> str:
    parts = path.relative_to(KIT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> int:
    """The layer of a kit module (`kit` itself is the public API, on top)."""
    first = module.split(".")[1] if "." in module else "__init__"
    return next(i for i, names in enumerate(LAYERS) if first in names)


def is_module(name: str) -> bool:
    path = KIT.parent / name.replace(".", "/")
    return path.is_dir() or path.with_suffix(".py").is_file()


def kit_imports(path: Path) -> set[str]:
    """Every kit module `path` imports, at its top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "kit"}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "kit":
            # `from kit.train import fit` imports the module kit.train.fit
            subs = {f"{node.module}.{a.name}" for a in node.names}
            found |= {s for s in subs if is_module(s)} or {node.module}
    return found


def graph() -> dict[str, set[str]]:
    return {module_name(p): kit_imports(p) for p in KIT.rglob("*.py")}


def test_every_module_has_a_layer_and_imports_only_from_below():
    for module, imports in graph().items():
        for imported in imports:
            assert layer(imported) <= layer(module), f"{module} imports {imported}, a layer above"
            if layer(imported) == layer(module) and 0 < layer(module) < len(LAYERS) - 1:
                assert imported.split(".")[1] == module.split(".")[1], (module, imported)


def test_no_import_cycle():
    edges = graph()
    done, path = set(), []

    def visit(module):
        assert module not in path, " -> ".join([*path[path.index(module) :], module])
        if module in done:
            return
        path.append(module)
        for imported in edges.get(module, ()):
            if imported != module and imported in edges:
                visit(imported)
        path.pop()
        done.add(module)

    for module in edges:
        visit(module)


def test_the_docs_tree_lists_every_module_once():
    page = (KIT.parent / "docs" / "architecture.md").read_text()
    block = page.split("```\nkit/\n", 1)[1].split("```", 1)[0]
    listed, folders = [], []  # the folders open above the line, by depth (2 spaces each)
    for line in block.splitlines():
        if not line.strip() or len(line) - len(line.lstrip()) > 2 * (len(folders) + 1):
            continue  # a description's second line
        depth = (len(line) - len(line.lstrip())) // 2 - 1
        name, folders = line.split()[0], folders[:depth]
        if name.endswith("/"):
            folders.append(name)
        else:
            listed.append("".join(folders) + name)
    modules = [p.relative_to(KIT).as_posix() for p in KIT.rglob("*.py")]
    modules = [m for m in modules if not m.endswith("/__init__.py")]
    assert sorted(listed) == sorted(modules)
