"""Checks a training launch makes before any model exists (issue 24): rows longer than the model's
positions (item 8), a LoRA run named as ``checkpoint.init_from`` (item 14), and the RNG state of
checkpoints written before it became plain tensors (item 10)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from megatron_hybridir.config import ConfigError, LoraConfig, ModelConfig, RunConfig, load_config
from megatron_hybridir.config import save_config
from megatron_hybridir.training.run_identity import check_data, check_relaunch, init_model


def _data(folder: Path, max_length: dict) -> Path:
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps(
        {"vocab_size": 200, "tokenizer_hash": "t", "max_length": max_length,
         "config": {"max_length": max_length, "tokenizer": "tok"}}))
    return folder


def test_rows_longer_than_the_position_table_are_refused_naming_field_value_and_limit(tmp_path):
    data = _data(tmp_path / "data", {"query": 64, "positive": 4096, "negative": 256})
    config = load_config(None, ["model.preset=tiny", f"data.path={data}"])   # 512 positions
    with pytest.raises(ConfigError) as err:
        check_data(config)
    assert str(err.value) == (
        f"data.path: {data / 'manifest.json'}: max_length.positive=4096 (rows padded to 4096 with "
        f"data.pad_to_multiple=8) is longer than the model's position limit 512 "
        f"(model.max_position_embeddings=512); such a row would fail when it is drawn. Preprocess "
        f"again with --max-length positive=512")


def test_padding_and_position_offsets_count_and_rows_that_fit_pass(tmp_path):
    data = _data(tmp_path / "data", {"query": 64, "positive": 510, "negative": 256})
    bert = ["model.layer_kind=bert", "model.type_vocab_size=1", "model.position_offset=2",
            "model.max_position_embeddings=514", "model.vocab_size=256", f"data.path={data}"]
    check_data(load_config(None, bert))                       # 510 -> padded 512 = 514 - 2
    with pytest.raises(ConfigError, match=r"max_length.positive=510 \(rows padded to 512 with "
                                          r"data.pad_to_multiple=8\) is longer than the model's "
                                          r"position limit 510 \(model.max_position_embeddings="
                                          r"512 minus model.position_offset=2\)"):
        check_data(load_config(None, [*bert, "model.max_position_embeddings=512"]))
    with pytest.raises(ConfigError, match=r"max_length.negative=256 is longer than seq_length=64 "
                                          r"\(pipeline parallelism pads every row to seq_length\)"):
        check_data(load_config(None, ["model.preset=tiny", f"data.path={data}", "seq_length=64",
                                      "parallel.pipeline_model_parallel_size=2"]))


def test_a_lora_run_as_init_from_says_to_merge_it_first(tmp_path):
    run = tmp_path / "lora_run"
    step = run / "checkpoints" / "step_00000002"
    step.mkdir(parents=True)
    (step / "metadata.json").write_text("{}")
    (run / "checkpoints" / "latest").write_text("2\n")
    save_config(RunConfig(model=ModelConfig(lora=LoraConfig())), run / "config.yaml")
    with pytest.raises(ConfigError) as err:
        init_model(str(run), ModelConfig())
    message = str(err.value)
    assert message.startswith(f"checkpoint.init_from={run} is a LoRA run: its checkpoints hold "
                              f"only the LoRA adapters, not the frozen base weights")
    assert f"python tools/export_to_hf.py --checkpoint {run} --output MERGED_HF" in message
    assert "python tools/convert_hf_to_megatron.py --hf MERGED_HF --output MERGED" in message


def test_rng_state_of_older_checkpoints_still_restores(tmp_path):
    """Before issue 24 ``rng_rank<r>.pt`` held a pickled tuple; it holds only tensors, so it
    passes ``weights_only=True`` and restores the same draws."""
    from megatron_hybridir.training.checkpoint import _restore_rng, get_cuda_rng_tracker

    # The tracker is process-wide: restore what other tests in this process rely on afterwards
    # (restoring an empty tracker state here broke every later dropout fork in the session).
    tracker = get_cuda_rng_tracker()
    saved = tracker.get_states()
    try:
        torch.manual_seed(7)
        torch.save((torch.get_rng_state(), None, saved), tmp_path / "rng_rank0.pt")
        expected = torch.rand(4)
        torch.manual_seed(99)
        _restore_rng(tmp_path / "rng_rank0.pt")
        assert torch.equal(torch.rand(4), expected)
        assert set(tracker.get_states()) == set(saved)
    finally:
        tracker.set_states(saved)


def test_a_relaunch_may_turn_packing_and_the_token_budget_on_but_not_change_the_loss(tmp_path):
    # Packing and the token budget change how pairs are laid out, not the pairs or the loss.
    save_config(RunConfig(), tmp_path / "config.yaml")
    packed = load_config(None, ["data.packing=true", "data.micro_batch_tokens=2048",
                                "training.gradcache=true"])
    changes = check_relaunch(tmp_path, packed, None)
    assert changes == {"data.packing": (False, True), "data.micro_batch_tokens": (None, 2048),
                       "training.gradcache": (False, True)}
    with pytest.raises(ConfigError, match=r"cannot change on a relaunch: loss.temperature"):
        check_relaunch(tmp_path, load_config(None, ["data.packing=true", "loss.temperature=0.1"]),
                       None)
