"""The recipes ship as package data (``megatron_hybridir/recipes``), ``examples/*.yaml`` are links
to them, so the README's paths and an installed package read the same files; a recipe named as
``examples/NAME.yaml`` resolves from any folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from megatron_hybridir import recipes
from megatron_hybridir.config import ConfigError
from megatron_hybridir.demo import finetune, pipeline
from megatron_hybridir.train import main as train_main

ROOT = Path(__file__).resolve().parents[2]
PACKAGED = Path(recipes.__file__).parent


def test_examples_are_links_to_the_packaged_recipes():
    examples = sorted((ROOT / "examples").glob("*.yaml"))
    assert [p.name for p in examples] == [f"{n}.yaml" for n in recipes.names()]
    for path in examples:
        assert path.is_symlink(), f"{path}: a copy can drift; link it to {PACKAGED / path.name}"
        assert path.resolve() == (PACKAGED / path.name).resolve()


def test_demos_read_packaged_recipes():
    assert pipeline.DEMO_CONFIG == recipes.recipe_path("demo_cpu") == PACKAGED / "demo_cpu.yaml"
    assert finetune.FINETUNE_CONFIG == PACKAGED / "finetune_minilm.yaml"
    assert pipeline.DEMO_CONFIG.is_file() and finetune.FINETUNE_CONFIG.is_file()


def test_resolve_config_outside_the_repository(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    packaged = str(PACKAGED / "tiny_cpu.yaml")
    for name in ("examples/tiny_cpu.yaml", "tiny_cpu.yaml", "tiny_cpu"):
        assert recipes.resolve_config(name) == packaged
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "tiny_cpu.yaml").write_text("seed: 3\n")   # a user's own file wins
    assert recipes.resolve_config("examples/tiny_cpu.yaml") == "examples/tiny_cpu.yaml"
    with pytest.raises(ConfigError, match=r"--config other/tiny_cpu.yaml: no such file, and not a "
                                          r"packaged recipe .*one of .*demo_cpu"):
        recipes.resolve_config("other/tiny_cpu.yaml")
    with pytest.raises(ConfigError, match="'nope' is not a packaged recipe"):
        recipes.recipe_path("nope")


def test_train_dry_run_of_a_packaged_recipe_from_any_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert train_main(["--dry-run", "--world-size", "8", "--config",
                       "examples/retriever_7b.yaml"]) == 0
    assert "layout: 8 GPUs" in capsys.readouterr().out
    assert train_main(["--dry-run", "--config", "examples/missing.yaml"]) == 2
    assert "--config examples/missing.yaml: no such file" in capsys.readouterr().err
