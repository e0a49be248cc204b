"""The package's layering, read from the import statements of every file (``ast``; nothing is
imported, so function-level imports count as much as top-level ones).

Why: shared pieces have neutral homes (``checkpointing/``, ``runtime/``, ``model/unwrap``,
``evaluation/loading``, ``study/``) so that training and conversion do not import each other, the
library does not import its command-line modules (``cli/``, ``train``, ``evaluate``), and
``tools/`` are aliases of those (``test_cli.py``) or benchmarks over the library.
Config is the bottom layer (issue 27): it imports nothing of the package but the plain-data
modules listed in ``CONFIG_READS``, and those import no torch and nothing else of ours. (Import
cycles are ``test_import_graph.py``'s.)
"""

from __future__ import annotations

import ast
import subprocess
import sys
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
    *[("megatron_hybridir/config", module, "config is the bottom layer: plain data, no torch")
      for module in ("torch", "megatron", "transformers", "safetensors")],
]

# The only modules of the package config/ may import (besides config/ itself), and why each is
# plain data. Each imports nothing of the package outside this list, and no torch (tested below).
CONFIG_READS = {
    "megatron_hybridir.model.families":
        "the family registry (sizes, layer kind, fixed flags): presets and the family check read it",
    "megatron_hybridir.model.pooling_kinds":
        "the pooling names and their field checks; the torch registry (model/pooling/) adds to it",
    "megatron_hybridir.data.sampler":
        "SamplerConfig and its choices, which the data section is made of (numpy only, rule 3)",
    "megatron_hybridir.data.source_batches": "the sampler's per-source batches (numpy only)",
    "megatron_hybridir.data.batch_kind": "the sampler's batch kinds (an enum)",
    "megatron_hybridir.data.seeding": "the keyed seeding rule the sampler's draws use (numpy only)",
}
# A plain-data module's package __init__ runs when it is imported: these must stay import-free.
PLAIN_PACKAGES = ("megatron_hybridir.model", "megatron_hybridir.data")
PLAIN_THIRD_PARTY = ("numpy",)

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


def _package_modules(path: Path) -> set[str]:
    return {m for m in imported_modules(path) if _within(m, PACKAGE)}


def test_config_imports_only_config_and_plain_data():
    """Every import of config/, function-level ones included, is config/ or in CONFIG_READS."""
    found = [f"{path.relative_to(ROOT)} imports {module}"
             for path in _files("megatron_hybridir/config")
             for module in sorted(_package_modules(path))
             if not _within(module, "megatron_hybridir.config") and module not in CONFIG_READS
             and module not in PLAIN_PACKAGES]
    assert found == []


def _path_of(module: str) -> Path:
    path = ROOT / Path(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


@pytest.mark.parametrize("module", sorted(CONFIG_READS) + list(PLAIN_PACKAGES))
def test_what_config_reads_is_plain_data(module):
    """...imports only the standard library, numpy, and other modules of CONFIG_READS (function-
    level imports counted); a package __init__ on the way imports nothing."""
    imports = imported_modules(_path_of(module))
    ours = {m for m in imports if _within(m, PACKAGE)} - set(CONFIG_READS) - set(PLAIN_PACKAGES)
    assert ours == set(), f"{module} imports {sorted(ours)}"
    if module in PLAIN_PACKAGES:
        assert imports <= {"__future__"}, f"{module}/__init__.py imports {sorted(imports)}"
    third = {m.split(".")[0] for m in imports if not _within(m, PACKAGE)}
    assert third - set(sys.stdlib_module_names) - set(PLAIN_THIRD_PARTY) == set(), module


@pytest.mark.parametrize("module", sorted(CONFIG_READS))
def test_each_config_read_is_still_needed(module):
    assert any(module in imported_modules(p) for p in [*_files("megatron_hybridir/config"),
                                                       *map(_path_of, CONFIG_READS)]), (
        f"nothing in config/ reads {module} any more: remove it from CONFIG_READS")


def test_loading_and_validating_a_config_imports_no_torch():
    """What the rules above mean at run time: a config with every pooling kind's check loads
    without torch (``--help``, presets and validation stay cheap)."""
    code = ("import sys; from megatron_hybridir.config import load_config; "
            "load_config(None, ['model.preset=tiny', 'model.pooling=latent_attention', "
            "'model.latent_num_heads=4']); print(sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('torch', 'megatron')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


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
