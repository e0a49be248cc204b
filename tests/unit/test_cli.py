"""``hybridir``: every tool is a subcommand, each answers ``--help`` under its own name, and each
``tools/*.py`` is an alias of exactly one of them (the same ``main``)."""

from __future__ import annotations

import ast
import importlib
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

import megatron_hybridir
from megatron_hybridir.cli.main import COMMANDS, main
from megatron_hybridir.runtime.child_env import child_env

ROOT = Path(__file__).resolve().parents[2]
TOOLS = sorted((ROOT / "tools").glob("*.py"))
CLI_FOLDER = Path(megatron_hybridir.__path__[0]) / "cli"


def _alias_target(path: Path):
    """The module whose ``main`` a tools/ script runs (it must import exactly one)."""
    found = [line.split()[1] for line in path.read_text().splitlines()
             if line.startswith("from megatron_hybridir.") and line.endswith(" import main")]
    assert len(found) == 1, f"{path.name}: expected one `from megatron_hybridir.X import main`"
    return found[0]


def test_listing_names_every_subcommand(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: hybridir <subcommand>")
    table = out.split("subcommands:\n")[1].split("\n\n")[0]
    listed = [line.split()[0] for line in table.splitlines()]
    assert listed == list(COMMANDS)


def test_every_tool_and_cli_module_is_a_subcommand():
    modules = {module for module, _ in COMMANDS.values()}
    assert {_alias_target(p) for p in TOOLS} <= modules
    cli_modules = {f"megatron_hybridir.cli.{p.stem}" for p in CLI_FOLDER.glob("*.py")
                   if p.stem not in ("__init__", "main")}
    assert cli_modules <= modules
    assert {"megatron_hybridir.train", "megatron_hybridir.evaluate",
            "megatron_hybridir.demo.pipeline", "megatron_hybridir.demo.finetune"} <= modules


@pytest.mark.parametrize("name", list(COMMANDS))
def test_subcommand_help(name, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", list(sys.argv))      # the dispatcher sets argv[0]
    try:
        status = main([name, "--help"])
    except SystemExit as exit_:                            # argparse's --help
        status = exit_.code
    assert status == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: hybridir {name}"), out[:200]


def test_unknown_subcommand_fails_naming_it(capsys):
    assert main(["trian"]) == 2
    err = capsys.readouterr().err
    assert "unknown subcommand 'trian'" in err and "  train " in err


def test_no_subcommand_prints_the_listing_and_fails(capsys):
    assert main([]) == 2
    assert "subcommands:" in capsys.readouterr().out


@pytest.mark.parametrize("path", TOOLS, ids=[p.name for p in TOOLS])
def test_tools_are_aliases(path, capsys, monkeypatch):
    target = _alias_target(path)
    tree = ast.parse(path.read_text())
    imports = {n.module if isinstance(n, ast.ImportFrom) else a.name for n in ast.walk(tree)
               if isinstance(n, ast.Import | ast.ImportFrom) for a in n.names}
    assert imports == {"sys", target}, f"{path.name} is more than an alias of {target}"
    module = importlib.import_module(target)
    assert runpy.run_path(str(path), run_name="alias")["main"] is module.main
    monkeypatch.setattr(sys, "argv", [str(path), "--help"])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(path), run_name="__main__")
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("usage: ")


def test_child_env_leads_with_this_package(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    env = child_env(OMP_NUM_THREADS="1")
    first, *rest = env["PYTHONPATH"].split(os.pathsep)
    assert Path(first) / "megatron_hybridir" == Path(megatron_hybridir.__path__[0]).resolve()
    assert rest == ["/elsewhere"] and env["OMP_NUM_THREADS"] == "1"


def test_demo_children_run_this_package_in_the_callers_folder(monkeypatch):
    """The demos' training children: relative paths (``--out runs/q``) mean the caller's folder, and
    the child imports the parent's copy of the package (installed or checked out)."""
    from megatron_hybridir.demo import finetune, pipeline
    from megatron_hybridir.demo.data_handle import DemoData

    calls = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: calls.append((cmd, kw)))
    pipeline.train(Path("runs/q/hybrid"), DemoData(
        root=Path("runs/q/data"), tokenizer=Path("runs/q/data/tokenizer"),
        indexed=Path("runs/q/data/indexed"), vocab_size=9, languages=("xa",)), [])
    finetune.train(Path("runs/f/finetuned"), {"converted": Path("runs/f/minilm"),
                                              "indexed": Path("runs/f/indexed")}, [])
    root = str(Path(megatron_hybridir.__path__[0]).resolve().parent)
    for (cmd, kw), recipe in zip(calls, (pipeline.DEMO_CONFIG, finetune.FINETUNE_CONFIG)):
        assert kw.get("cwd") is None, kw["cwd"]
        assert kw["env"]["PYTHONPATH"].split(os.pathsep)[0] == root
        assert cmd[cmd.index("--config") + 1] == str(recipe)
    assert len(calls) == 2
