"""LoRA through the trainer, checkpoints and export, on a tiny Llama converted from HF:

- 3 steps + resume + 3 steps == 6 steps, bit for bit, with adapter-only checkpoints (adapters,
  the head's projection and their optimizer state; no base tensor);
- a TP=1 adapter checkpoint resumes at TP=2 (the next step's loss within 1e-5);
- resuming on another base is refused, naming both hashes;
- the merged export equals the Megatron model with adapters (1e-5), ``--verify`` agrees, and the
  PEFT-format adapter on the exported base gives the same hidden states as the merged weights.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import yaml

from megatron_hybridir.training.run_config import load_run_config
from megatron_hybridir.training.trainer import train
from tests.distributed.harness import run_ranks
from tests.unit.convert.hf_fixtures import write_hf_model
from tests.unit.convert.test_roundtrip import TEXTS, _ids


def _train_rank(launch, config_path: str, overrides: list[str]) -> None:
    train(load_run_config(config_path, overrides))


def _losses(run_dir) -> list[float]:
    return [json.loads(line)["loss"] for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    from megatron_hybridir.convert.hf_import import ImportHead, import_hf

    tmp = tmp_path_factory.mktemp("bases")
    out = {}
    for seed in (0, 1):
        hf = write_hf_model(tmp / f"hf{seed}", "llama", seed=seed)
        out[seed] = import_hf(hf, tmp / f"meg{seed}", dtype="fp32",
                              head=ImportHead(pooling="mean", projection_dim=16))
    return out


def _run_config(tmp: Path, base: Path) -> Path:
    from megatron_hybridir.checkpointing.folders import resolve_checkpoint

    model, _, _ = resolve_checkpoint(base)
    model_dict = dataclasses.asdict(model)
    model_dict["lora"] = {"rank": 4, "alpha": 8.0, "target_modules": ["qkv", "proj", "fc1", "fc2"]}
    # 67 tokens padded to 128 rows at TP=1 (the import) and at TP=2 alike.
    model_dict["make_vocab_size_divisible_by"] = 64
    config = {"model": model_dict, "seq_length": 16, "loss": {"temperature": 0.5},
              "data": {"global_batch_size": 4, "micro_batch_size": 2},
              "optim": {"lr": 1e-2}, "training": {"log_interval": 1},
              "checkpoint": {"init_from": str(base)}}
    path = tmp / "lora.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def lora_runs(tmp_path_factory, bases):
    tmp = tmp_path_factory.mktemp("lora_runs")
    config = str(_run_config(tmp, bases[0]))
    straight, resumed = tmp / "straight", tmp / "resumed"
    run_ranks(_train_rank, 1, config, [f"checkpoint.dir={straight}", "training.train_steps=6"])
    run_ranks(_train_rank, 1, config, [f"checkpoint.dir={resumed}", "training.train_steps=6",
                                       "training.exit_interval=3"])
    first_half = _losses(resumed)
    run_ranks(_train_rank, 1, config, [f"checkpoint.dir={resumed}", "training.train_steps=6"])
    return dict(tmp=tmp, config=config, straight=straight, resumed=resumed, first_half=first_half)


def test_lora_resume_is_exact_and_checkpoints_hold_only_adapters(lora_runs):
    from megatron.core import dist_checkpointing

    straight, resumed = lora_runs["straight"], lora_runs["resumed"]
    assert len(lora_runs["first_half"]) == 3
    assert _losses(resumed) == _losses(straight) and len(_losses(straight)) == 6
    assert len(set(_losses(straight))) > 1          # it trains: the loss moves
    keys = set(dist_checkpointing.load_tensors_metadata(str(straight / "checkpoints" / "step_00000006")))
    model_keys = {k for k in keys if not k.startswith("optimizer.")}
    assert model_keys and all(".lora_a" in k or ".lora_b" in k or k.startswith("head.")
                              for k in model_keys), sorted(model_keys)
    assert "head.projection.weight" in model_keys
    assert any(k.endswith("linear_fc1.lora_b") for k in model_keys)
    assert {k for k in keys if k.startswith("optimizer.")}     # Adam moments of the adapters


def test_adapter_checkpoints_carry_checksums_that_catch_a_changed_file(lora_runs, tmp_path):
    """Adapter-only checkpoints go through the same integrity path as full ones."""
    import json
    import shutil

    from megatron_hybridir.checkpointing.checksums import MANIFEST, CheckpointCorruptError, verify_checksums

    step = lora_runs["straight"] / "checkpoints" / "step_00000006"
    listed = set(json.loads((step / MANIFEST).read_text())["files"])
    assert listed == {str(p.relative_to(step)) for p in step.rglob("*")
                      if p.is_file() and p.name != MANIFEST}
    verify_checksums(step)
    copy = tmp_path / "step_00000006"
    shutil.copytree(step, copy)
    victim = sorted(p for p in copy.rglob("*.distcp"))[0]
    victim.write_bytes(victim.read_bytes()[:-1])
    with pytest.raises(CheckpointCorruptError, match=victim.name):
        verify_checksums(copy)


def test_adapter_checkpoint_resumes_at_another_tp_layout(lora_runs):
    """The TP=1 adapter checkpoint (adapters + Adam state) resharded to TP=2: step 7 gives the
    same loss as continuing at TP=1."""
    import shutil

    tmp = lora_runs["tmp"]
    for name, world, layout in (("tp1", 1, []), ("tp2", 2, ["parallel.tensor_model_parallel_size=2"])):
        shutil.copytree(lora_runs["straight"], tmp / name)
        (tmp / name / "metrics.jsonl").unlink()
        run_ranks(_train_rank, world, lora_runs["config"],
                  [f"checkpoint.dir={tmp / name}", "training.train_steps=7", *layout])
    tp1, tp2 = _losses(tmp / "tp1"), _losses(tmp / "tp2")
    assert len(tp1) == len(tp2) == 1 and abs(tp1[0] - tp2[0]) < 1e-5


def test_resume_on_another_base_is_refused_naming_both_hashes(lora_runs, bases, tmp_path):
    import shutil

    import yaml

    from megatron_hybridir.training.adapter_checkpoint import content_hash

    # The base folder the run names is replaced by another model (same path, other content): the
    # relaunch check sees an unchanged config, so only the adapters' base hash can catch it.
    # (Naming another init_from path is refused earlier, by the relaunch identity check.)
    run, base = tmp_path / "run", tmp_path / "base"
    shutil.copytree(lora_runs["resumed"], run)
    shutil.copytree(bases[1], base)
    recorded = yaml.safe_load((run / "config.yaml").read_text())
    recorded["checkpoint"]["init_from"] = str(base)
    (run / "config.yaml").write_text(yaml.safe_dump(recorded))
    with pytest.raises(Exception) as err:
        run_ranks(_train_rank, 1, lora_runs["config"],
                  [f"checkpoint.dir={run}", "training.train_steps=9",
                   f"checkpoint.init_from={base}"])
    message = str(err.value)
    old, new = content_hash(bases[0] / "checkpoint"), content_hash(bases[1] / "checkpoint")
    assert old != new and old in message and new in message
    assert "adapters were trained on base" in message


def test_merged_export_matches_the_model_with_adapters_and_peft_loads_the_adapter(
        lora_runs, megatron_runtime, tmp_path, bases):
    import numpy as np
    from peft import PeftModel
    from safetensors.torch import load_file
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel

    from megatron_hybridir.convert.hf_export import export_hf
    from megatron_hybridir.checkpointing.folders import resolve_checkpoint
    from megatron_hybridir.convert.verify import load_full_model, verify_export

    run = lora_runs["straight"]
    out = export_hf(run, tmp_path / "st", tokenizer=bases[0] / "tokenizer", peft_adapter=True)
    model_cfg, ckpt, _ = resolve_checkpoint(run)
    ours = load_full_model(model_cfg, ckpt)           # base + adapters, unmerged
    ids, mask = _ids(TEXTS)
    st = SentenceTransformer(str(out), device="cpu")
    with torch.no_grad():
        expected = ours(ids, mask).numpy()
        hidden = ours(ids, mask, return_hidden=True)
    features = st.tokenize(TEXTS)
    with torch.no_grad():
        got = st.encode(TEXTS, batch_size=4)
        ours_st = ours(features["input_ids"], features["attention_mask"].bool()).numpy()
    assert np.abs(got - ours_st).max() < 1e-5
    assert verify_export(run, out, tol=1e-5)
    # Non-vacuous: the merged weights are not the base's.
    merged = load_file(out / "model.safetensors")
    base_export = export_hf(bases[0], tmp_path / "base_st", tokenizer=bases[0] / "tokenizer")
    base = load_file(base_export / "model.safetensors")
    assert not torch.allclose(merged["layers.0.self_attn.q_proj.weight"],
                              base["layers.0.self_attn.q_proj.weight"])
    assert torch.equal(merged["layers.0.input_layernorm.weight"], base["layers.0.input_layernorm.weight"])
    # PEFT: the unmerged adapter on the exported base == the merged export (hidden states).
    peft_model = PeftModel.from_pretrained(AutoModel.from_pretrained(str(base_export)).eval(),
                                           str(out / "lora_adapter")).eval()
    merged_hf = AutoModel.from_pretrained(str(out)).eval()
    for m in (peft_model, merged_hf):
        m.config.is_causal = False
    with torch.no_grad():
        a = peft_model(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        b = merged_hf(input_ids=ids, attention_mask=mask.long()).last_hidden_state
    assert (a - b)[mask].abs().max().item() < 1e-5
    assert (b - hidden)[mask].abs().max().item() < 1e-5
    assert expected.shape == (4, 16)


def test_lora_run_merges_through_its_merged_weights(lora_runs, bases, megatron_runtime, tmp_path):
    """A LoRA run merged with its base: the adapters are folded in first (W + alpha/r B A), then
    averaged; the output is a plain model (no adapters, model.lora unset)."""
    from megatron_hybridir.checkpointing.folders import resolve_checkpoint
    from megatron_hybridir.convert.checkpoint_reader import iter_megatron_tensors
    from megatron_hybridir.convert.lora_merge import iter_merged_tensors
    from megatron_hybridir.convert.merge import merge_checkpoints

    def tensors(groups):
        return {k: v for group in groups for k, v in group.items()}

    run = lora_runs["straight"]
    lora = tensors(iter_merged_tensors(*resolve_checkpoint(run)[:2]))
    base = tensors(iter_megatron_tensors(*resolve_checkpoint(bases[0])[:2]))
    out = merge_checkpoints([run, bases[0]], tmp_path / "merged", weights=[0.5, 0.5])
    model_cfg, ckpt, _ = resolve_checkpoint(out)
    assert model_cfg.lora is None
    merged = tensors(iter_megatron_tensors(model_cfg, ckpt))
    assert sorted(merged) == sorted(lora)
    for name in merged:
        expected = (0.5 * lora[name].double() + 0.5 * base[name].double()).to(lora[name].dtype)
        assert torch.equal(merged[name], expected), name
    assert not torch.equal(merged["decoder.layers.0.self_attention.linear_qkv.weight"],
                           base["decoder.layers.0.self_attention.linear_qkv.weight"])
