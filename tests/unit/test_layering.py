"""The package's layering, read from the import statements of every file (``ast``; nothing is
imported, so function-level imports count as much as top-level ones).

Why: shared pieces have neutral homes (``checkpointing/``, ``runtime/``, ``model/unwrap``,
``evaluation/loading``, ``study/``) so that training and conversion do not import each other, the
library does not import its command-line modules (``cli/``, ``train``, ``evaluate``), and
``tools/`` are aliases of those (``test_cli.py``) or benchmarks over the library.
(That module-level imports form no cycle is ``test_import_graph.py``'s.)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "megatron_hybridir"
CLI_MODULES = ("megatron_hybridir.cli", "megatron_hybridir.evaluate", "megatron_hybridir.train")

# (importing files under, may not import, why)
FORBIDDEN = [
    ("megatron_hybridir/training", "megatron_hybridir.convert",
     "training reads checkpoints through checkpointing/, never through the conversion tools"),
    ("megatron_hybridir/checkpointing", "megatron_hybridir.training",
     "checkpointing/ is shared by training and convert, so it imports neither"),
    ("megatron_hybridir/checkpointing", "megatron_hybridir.convert",
     "checkpointing/ is shared by training and convert, so it imports neither"),
    ("megatron_hybridir/runtime", "megatron_hybridir.training", "runtime/ sits below training"),
    ("megatron_hybridir/runtime", "megatron_hybridir.convert", "runtime/ sits below convert"),
    ("megatron_hybridir/model", "megatron_hybridir.training", "model code knows nothing of training"),
    ("megatron_hybridir/model", "megatron_hybridir.convert", "model code knows nothing of conversion"),
    ("megatron_hybridir/data", "megatron_hybridir.model", "data never imports the model"),
    ("megatron_hybridir/data", "megatron_hybridir.evaluation",
     "data sits below evaluation (data/sources reads evaluation queries itself)"),
    ("megatron_hybridir/data/sources", "megatron.core",
     "building training records needs no Megatron-Core"),
    ("megatron_hybridir/evaluation", "megatron.core", "evaluation runs without Megatron-Core"),
    *[("megatron_hybridir", cli, "the library never imports a command-line module")
      for cli in CLI_MODULES],
    *[("tools/bench", cli, "benchmarks call the library, not a command-line module")
      for cli in CLI_MODULES],
    ("tools", "megatron_hybridir.demo", "tools import the library; the demo is one of its users"),
    ("megatron_hybridir/cli", "megatron_hybridir.demo",
     "command-line modules call the library; the demo is one of its users (with subcommands)"),
]

# Files allowed to break one rule above, with the reason; each must still need its exception.
ALLOWED = {
    ("megatron_hybridir/cli/make_demo_data.py", "megatron_hybridir.demo"):
        "its whole purpose is to write the demo corpus (demo/data.make_demo_data)",
}


def _module_exists(name: str) -> bool:
    path = ROOT / Path(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _package_of(path: Path) -> str:
    """Dotted package a file's relative imports start from."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts if parts[-1] == "__init__" else parts[:-1]).removesuffix(".__init__")


def imported_modules(path: Path, nodes=None) -> set[str]:
    """Every module a file imports (or ``nodes`` of it): ``import a.b``, ``from a import b``
    (``a.b`` when ``b`` is a module) and relative imports, resolved against the repository."""
    out = set()
    for node in nodes if nodes is not None else ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = _package_of(path).split(".")
                parent = parent[:len(parent) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names if _module_exists(f"{base}.{a.name}"))
    return out


def _files(under: str) -> list[Path]:
    return sorted((ROOT / under).rglob("*.py"))


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def violations(rules=FORBIDDEN, allowed=ALLOWED) -> list[str]:
    found = []
    for under, forbidden, why in rules:
        for path in _files(under):
            rel = str(path.relative_to(ROOT))
            if (rel, forbidden) in allowed:
                continue
            for module in sorted(imported_modules(path)):
                itself = rel.removesuffix(".py").replace("/", ".")
                if _within(module, forbidden) and not _within(itself, forbidden):
                    found.append(f"{rel} imports {module} ({why})")
    return found


def test_layering_rules_hold():
    assert violations() == []


@pytest.mark.parametrize("key", sorted(ALLOWED))
def test_each_exception_is_still_needed(key):
    path, forbidden = key
    assert any(_within(m, forbidden) for m in imported_modules(ROOT / path)), (
        f"{path} no longer imports {forbidden}: remove its entry from ALLOWED")


def test_tools_import_only_the_library():
    """A tool imports the package and third-party modules, never the tests or another tool."""
    for path in _files("tools"):
        for module in imported_modules(path):
            assert not _within(module, "tests") and not _within(module, "tools"), (
                f"{path.relative_to(ROOT)} imports {module}")


def test_checker_sees_function_level_and_from_imports(tmp_path, monkeypatch):
    """The checker itself: a lazy ``from megatron_hybridir.convert import io`` inside a function
    of a training module is a violation."""
    fake = tmp_path / "megatron_hybridir" / "training"
    fake.mkdir(parents=True)
    (tmp_path / "megatron_hybridir" / "convert").mkdir()
    (tmp_path / "megatron_hybridir" / "convert" / "__init__.py").write_text("")
    (tmp_path / "megatron_hybridir" / "convert" / "io.py").write_text("")
    (fake / "bad.py").write_text("def f():\n    from megatron_hybridir.convert import io\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["ROOT"]), "ROOT", tmp_path)
    assert violations(FORBIDDEN[:1], {}) == [
        "megatron_hybridir/training/bad.py imports megatron_hybridir.convert "
        "(training reads checkpoints through checkpointing/, never through the conversion tools)",
        "megatron_hybridir/training/bad.py imports megatron_hybridir.convert.io "
        "(training reads checkpoints through checkpointing/, never through the conversion tools)"]
