"""The tree shows the architecture: subpackages say what they are, the core never imports a plugin, and no two
modules import each other at load time."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"agentd": ROOT / "agentd", **{p.name: p for p in (ROOT / "plugins").iterdir() if p.is_dir()}}


def _modules() -> dict[str, Path]:
    found = {}
    for top, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = [top, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imports(module: str, path: Path, top_level_only: bool) -> set[str]:
    """Modules ``module`` imports (relative imports resolved); only those run at import time if asked."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    if top_level_only:  # `if TYPE_CHECKING:` blocks never run
        nodes = [n for n in nodes if not (isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test))]
        nodes = [sub for n in nodes for sub in ast.walk(n)
                 if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def test_every_subpackage_says_what_it_is():
    for init in (ROOT / "agentd").rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc) > 40, f"{init.relative_to(ROOT)} needs a docstring saying what the package is"


def test_the_core_never_imports_a_plugin():
    modules = _modules()
    for module, path in modules.items():
        if module.split(".")[0] != "agentd":
            continue
        plugins = {name for name in _imports(module, path, top_level_only=False) if name.startswith("agentd_")}
        assert not plugins, f"{module} imports {plugins}: core code must reach plugins through hooks"


def test_no_import_cycles_at_load_time():
    modules = _modules()
    graph = {m: {i for i in _imports(m, p, top_level_only=True) if i in modules and i != m} for m, p in modules.items()}
    # A package's __init__ importing its own submodules is how packages work, not a cycle between modules.
    for m, deps in graph.items():
        graph[m] = {d for d in deps if not (m.startswith(d + ".") and (modules[d].name == "__init__.py"))}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep):] + [dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_the_cycle_check_can_fail(tmp_path, monkeypatch):
    pkg = tmp_path / "cyc"
    pkg.mkdir()
    (pkg / "__init__.py").write_text('"""A package whose two modules import each other, to prove the check works."""\n')
    (pkg / "a.py").write_text("from .b import x\ny = 1\n")
    (pkg / "b.py").write_text("from .a import y\nx = 1\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGES", {"cyc": pkg})
    try:
        test_no_import_cycles_at_load_time()
    except AssertionError as exc:
        assert "cyc.a -> cyc.b -> cyc.a" in str(exc)
    else:
        raise AssertionError("a two-module cycle went unnoticed")
