"""Recipes start from weights (issue 25): a preset that is a public checkpoint's architecture trains
only from ``checkpoint.init_from`` or with ``checkpoint.init: random`` stated; otherwise the launch
stops before any process group exists, naming the config file and the conversion command."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from megatron_hybridir.config import PRESETS, ConfigError, load_config
from megatron_hybridir.config.initial_weights import check_initial_weights
from megatron_hybridir.config.presets import PRETRAINED
from megatron_hybridir.train import main as train_main

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted((ROOT / "examples").glob("*.yaml"))
SEVEN_B = ROOT / "examples" / "retriever_7b.yaml"
CONVERT_7B = ("python tools/convert_hf_to_megatron.py --hf hf/mistralai/Mistral-7B-v0.1 "
              "--output checkpoints/mistral-7b-megatron --tensor-parallel 2 --dtype bf16")


def test_every_preset_but_tiny_names_its_public_checkpoint():
    assert set(PRETRAINED) == set(PRESETS) - {"tiny"}
    assert PRETRAINED["mistral-7b"] == "mistralai/Mistral-7B-v0.1"
    assert PRETRAINED["qwen3-32b"] == "Qwen/Qwen3-32B"


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_every_recipe_states_where_its_weights_come_from(path):
    raw = yaml.safe_load(path.read_text())
    preset = (raw.get("model") or {}).get("preset")
    ckpt = raw.get("checkpoint") or {}
    if preset in PRETRAINED:
        assert ckpt.get("init_from") or ckpt.get("init") == "random", path.name
    if preset == "tiny":
        assert ckpt.get("init") == "random", f"{path.name}: state the from-scratch opt-in"
    check_initial_weights(load_config(path), source=str(path))


def test_the_big_recipes_start_from_the_converted_checkpoints():
    expected = {"retriever_7b.yaml": "checkpoints/mistral-7b-megatron",
                "retriever_7b_lora.yaml": "checkpoints/mistral-7b-megatron",
                "retriever_14b.yaml": "checkpoints/qwen2.5-14b-megatron",
                "retriever_30b.yaml": "checkpoints/qwen3-32b-megatron",
                "retriever_30b_lora.yaml": "checkpoints/qwen3-32b-megatron"}
    for name, init_from in expected.items():
        assert load_config(ROOT / "examples" / name).checkpoint.init_from == init_from, name


def test_launch_without_weights_stops_before_any_process_group(monkeypatch, capsys):
    def no_training(config, **kw):
        raise AssertionError("train() reached: the launch should have stopped")

    monkeypatch.setattr("megatron_hybridir.train.train", no_training)
    assert train_main(["--config", str(SEVEN_B), "checkpoint.init_from=null"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {SEVEN_B}: model.preset=mistral-7b is the architecture of "
                          "mistralai/Mistral-7B-v0.1, but checkpoint.init_from is not set"), err
    assert "hf download mistralai/Mistral-7B-v0.1 --local-dir hf/mistralai/Mistral-7B-v0.1" in err
    assert CONVERT_7B in err
    assert "set checkpoint.init=random to train this architecture from scratch on purpose" in err
    # --dry-run stops the same way: a recipe that would not launch does not look ready.
    assert train_main(["--dry-run", "--world-size", "8", "--config", str(SEVEN_B),
                       "checkpoint.init_from=null"]) == 2


def test_trainer_refuses_a_config_built_in_code_before_initialising(monkeypatch):
    from megatron_hybridir.training import trainer

    def no_groups(*a, **kw):
        raise AssertionError("process groups initialised")

    monkeypatch.setattr(trainer, "initialize", no_groups)
    config = load_config(None, ["model.preset=qwen2-7b", "seq_length=32"])
    with pytest.raises(ConfigError, match=r"^model.preset=qwen2-7b is the architecture of "
                                          r"Qwen/Qwen2-7B, but checkpoint.init_from is not set"):
        trainer.Trainer(config)


def test_random_is_an_explicit_opt_in_and_contradicts_a_checkpoint():
    check_initial_weights(load_config(None, ["model.preset=mistral-7b", "checkpoint.init=random"]))
    check_initial_weights(load_config(None, ["model.preset=tiny"]))     # no public weights
    config = load_config(None, ["model.preset=mistral-7b", "checkpoint.init=random",
                                "checkpoint.init_from=checkpoints/x"])
    with pytest.raises(ConfigError, match=r"^cfg.yaml: checkpoint.init: random contradicts "
                                          r"checkpoint.init_from=checkpoints/x; remove one"):
        check_initial_weights(config, source="cfg.yaml")
    with pytest.raises(ConfigError, match="checkpoint.init: expected pretrained or random, got 'zero'"):
        load_config(None, ["checkpoint.init=zero"])


def test_dry_run_prints_where_the_weights_come_from(capsys):
    assert train_main(["--dry-run", "--world-size", "8", "--config", str(SEVEN_B)]) == 0
    out = capsys.readouterr().out
    assert ("weights: checkpoint.init_from=checkpoints/mistral-7b-megatron (not there yet; make it "
            "with:\n    hf download mistralai/Mistral-7B-v0.1") in out
    assert CONVERT_7B in out
    assert train_main(["--dry-run", "--config", str(ROOT / "examples" / "tiny_cpu.yaml")]) == 0
    assert "weights: random initialisation, std 0.02 (checkpoint.init=random)" in capsys.readouterr().out


def test_a_relaunch_may_state_the_opt_in_a_run_started_without(tmp_path):
    """Runs started before checkpoint.init existed recorded none (pretrained by default); their
    relaunch with the updated tiny configs is the same run."""
    from megatron_hybridir.config import save_config
    from megatron_hybridir.training.run_identity import check_relaunch

    old = load_config(None, ["model.preset=tiny"])
    save_config(old, tmp_path / "config.yaml")
    new = load_config(None, ["model.preset=tiny", "checkpoint.init=random"])
    assert check_relaunch(tmp_path, new, None) == {"checkpoint.init": ("pretrained", "random")}
