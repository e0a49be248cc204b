"""Merging reads checkpoints at any layout: one saved at TP=2 (two gloo ranks) merges with one
saved at TP=1 to the same result as its TP=1 original; the merged folder starts a run through
``checkpoint.init_from`` and exports to a sentence-transformers folder that reproduces it."""

from __future__ import annotations

import json
import shutil

import torch

from megatron_hybridir.training.run_config import load_run_config
from megatron_hybridir.convert.hf_export import export_hf
from megatron_hybridir.convert.merge import merge_checkpoints
from megatron_hybridir.training.trainer import train
from tests.distributed.harness import run_ranks
from tests.distributed.merge_workers import resave_at_layout
from tests.unit.convert.test_merge import load_merged, write_tiny


def test_tp2_checkpoint_merges_like_its_tp1_original(tmp_path, megatron_runtime):
    a = write_tiny(tmp_path / "a", seed=1)
    b = write_tiny(tmp_path / "b", seed=2)
    (tmp_path / "a_tp2").mkdir()
    shutil.copy(tmp_path / "a" / "model.yaml", tmp_path / "a_tp2" / "model.yaml")
    (tmp_path / "a_tp2" / "checkpoint").mkdir()
    run_ranks(resave_at_layout, 2, str(tmp_path / "a"), {"tensor_model_parallel_size": 2},
              str(tmp_path / "a_tp2" / "checkpoint"))
    # The re-saved checkpoint really is written by both TP ranks (DCP files __<rank>_<n>.distcp).
    files = {p.name.split("_")[2] for p in (tmp_path / "a_tp2" / "checkpoint").glob("*.distcp")}
    assert files == {"0", "1"}
    at_tp1 = load_merged(merge_checkpoints([tmp_path / "a", tmp_path / "b"], tmp_path / "m1",
                                           weights=[0.6, 0.4]))
    at_tp2 = load_merged(merge_checkpoints([tmp_path / "a_tp2", tmp_path / "b"], tmp_path / "m2",
                                           weights=[0.6, 0.4]))
    for name in a:
        assert torch.equal(at_tp2[name], at_tp1[name]), name
        expected = (0.6 * a[name].double() + 0.4 * b[name].double()).float()
        assert torch.equal(at_tp1[name], expected), name


def _train_rank(launch, overrides: list[str]) -> None:
    train(load_run_config(None, overrides))


def test_merged_checkpoint_trains_and_exports(tmp_path, megatron_runtime):
    from tokenizers import Tokenizer, models, pre_tokenizers

    from megatron_hybridir.checkpointing import provenance

    write_tiny(tmp_path / "a", seed=1)
    write_tiny(tmp_path / "b", seed=2)
    words = ["<pad>", "<unk>", "</s>", *(f"w{i}" for i in range(100))]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    (tmp_path / "tok").mkdir()
    tok.save(str(tmp_path / "tok" / "tokenizer.json"))
    for name in ("a", "b"):
        provenance.write(tmp_path / name, {"tokenizer": provenance.copy_tokenizer(
            tmp_path / "tok", tmp_path / name / "tokenizer")})
    merged = merge_checkpoints([tmp_path / "a", tmp_path / "b"], tmp_path / "merged")
    assert (merged / "tokenizer" / "tokenizer.json").exists()
    run_dir = tmp_path / "run"
    run_ranks(_train_rank, 1, ["seq_length=16", "data.global_batch_size=4", "data.micro_batch_size=2",
                               "training.train_steps=1", f"checkpoint.dir={run_dir}",
                               f"checkpoint.init_from={merged}"])
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 1
    assert json.loads((run_dir / "provenance.json").read_text())["init_from"] == str(merged.resolve())
    # --verify: sentence-transformers embeddings of the export == the Megatron model's (1e-4).
    out = export_hf(merged, tmp_path / "hf", verify=True)
    assert (out / "modules.json").exists() and (out / "model.safetensors").exists()
