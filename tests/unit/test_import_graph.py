"""No import cycle among megatron_hybridir's modules (issue 20): the graph of module-level imports,
built with ``ast`` (imports inside functions are left out: they run later, and each is there for
an optional dependency or a heavy one only some paths need; so are ``if TYPE_CHECKING:`` imports,
which never run), has no cycle. A package's
``__init__`` counts as imported with any of its submodules, as Python runs it first."""

from __future__ import annotations

import ast
from pathlib import Path

import megatron_hybridir

PACKAGE = Path(megatron_hybridir.__file__).parent
ROOT = "megatron_hybridir"


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = (ROOT, *path.relative_to(PACKAGE).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _type_checking_only(node: ast.AST) -> bool:
    """``if TYPE_CHECKING:``: read by type checkers, never run."""
    test = getattr(node, "test", None) if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _top_level_imports(tree: ast.Module, module: str, is_package: bool) -> set[str]:
    """Modules named by import statements outside functions, classes' methods and
    ``if TYPE_CHECKING:`` blocks."""
    names, stack = set(), list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if _type_checking_only(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: len(module.split(".")) - node.level + is_package]
                base = ".".join(anchor + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
        stack.extend(ast.iter_child_nodes(node))
    return names


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        targets = set()
        for imported in _top_level_imports(tree, name, path.name == "__init__.py"):
            parts = imported.split(".")
            # every package on the way is initialised too
            targets.update(".".join(parts[:i]) for i in range(2, len(parts) + 1)
                           if ".".join(parts[:i]) in modules)
        graph[name] = targets - {name} - {p for p in _parents(name)}
    return graph


def _parents(name: str) -> set[str]:
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path [a, b, ..., a], or None (iterative DFS, three colours)."""
    colour = dict.fromkeys(graph, 0)            # 0 unseen, 1 on the stack, 2 done
    for start in sorted(graph):
        if colour[start]:
            continue
        stack, path = [(start, iter(sorted(graph[start])))], [start]
        colour[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                colour[node] = 2
                stack.pop()
                path.pop()
            elif colour[child] == 1:
                return path[path.index(child):] + [child]
            elif colour[child] == 0:
                colour[child] = 1
                stack.append((child, iter(sorted(graph[child]))))
                path.append(child)
    return None


def test_find_cycle_finds_one_and_only_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]


def test_the_graph_sees_the_config_package():
    graph = import_graph()
    assert "megatron_hybridir.config.schema" in graph["megatron_hybridir.config.loading"]
    assert "megatron_hybridir.model.families" in graph["megatron_hybridir.config.presets"]
    assert "megatron_hybridir.config" in graph["megatron_hybridir.training.trainer"]


def test_no_import_cycle_among_the_package_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)
