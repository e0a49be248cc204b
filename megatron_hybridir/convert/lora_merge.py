"""Export of LoRA runs: adapters merged into the base weights, or written in PEFT's format.

Why it exists: downstream tools (sentence-transformers, mteb, our evaluator) load a plain HF folder,
so the default export of an adapter checkpoint is the base with W' = W + (alpha / r) B A folded in,
streamed layer by layer through ``hf_export`` like any checkpoint (:func:`open_checkpoint` gives
export and merging this reader in place of the plain one). The base is the one the adapter
checkpoint names; its content hash must still match (otherwise the merge would silently put the
adapters on other weights). Optionally the unmerged adapter is written in PEFT's layout
(``adapter_config.json`` + ``adapter_model.safetensors``), which ``peft.PeftModel`` loads onto the
exported HF base: Megatron's fused linears (grouped QKV, SwiGLU gate/up) become one LoRA per HF
projection sharing A, with B split by the same row rules as the weight, which is exact.

What it does not do: train, or merge at TP > 1 (checkpoints are read unsharded).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import torch

from megatron_hybridir.config import ModelConfig, ParallelConfig
from megatron_hybridir.convert.adapter import StateDictAdapter, export_family
from megatron_hybridir.convert.checkpoint_reader import (
    CheckpointReader, MegatronTensors, checkpoint_keys, local_key)
from megatron_hybridir.convert.mappings import ConversionError
from megatron_hybridir.model.lora import TARGETS, is_adapter_name, merge_into

LINEAR = {target: f"{owner}.{linear}" for target, (owner, linear, _) in TARGETS.items()}


def adapter_base(ckpt: Path) -> dict:
    """The base reference an adapter checkpoint was trained on, re-hashed to make sure it is the
    same content now."""
    from megatron.core import dist_checkpointing
    from megatron_hybridir.training.adapter_checkpoint import content_hash

    common = dist_checkpointing.load_common_state_dict(str(ckpt))
    ref = (common.get("extra") or {}).get("lora_base")
    if ref is None:
        raise ConversionError(f"{ckpt}: model.lora is set but the checkpoint names no base "
                              f"(extra.lora_base); not an adapter checkpoint of this trainer")
    base_ckpt = Path(ref["checkpoint"])
    if not base_ckpt.exists():
        raise ConversionError(f"{ckpt}: its LoRA base {base_ckpt} no longer exists")
    now = content_hash(base_ckpt)
    if now != ref["sha256"]:
        raise ConversionError(f"{ckpt}: adapters were trained on {base_ckpt} with sha256 "
                              f"{ref['sha256']}, which now hashes to {now}; refusing to merge")
    return ref


class MergedReader(MegatronTensors):
    """Tensors of an adapter checkpoint by local (TP=1) name, in any order, with the adapters
    merged into their linears' weights; head tensors come from the adapter checkpoint (trained),
    everything else from the base it names. Memory: one tensor (plus its adapter pair)."""

    def __init__(self, model: ModelConfig, ckpt: Path):
        self.num_layers = model.num_layers
        self.base = CheckpointReader(Path(adapter_base(ckpt)["checkpoint"]))
        self.adapters = CheckpointReader(ckpt)
        self.keys = checkpoint_keys(model)
        self.scale = model.lora.alpha / model.lora.rank
        self.linears = {LINEAR[target] for target in model.lora.target_modules}

    def names(self) -> list[str]:
        """The merged model's tensors: no adapter matrices."""
        return [n for n in self.keys if not is_adapter_name(n)]

    def _read(self, key: str, layer=None) -> torch.Tensor:
        return (self.adapters if key in self.adapters.metadata else self.base).read(key, layer)

    def read(self, name: str) -> torch.Tensor:
        key, layer = local_key(self.keys, name)
        tensor = self._read(key, layer)
        linear = name.split(".", 3)[-1].removesuffix(".weight")
        if layer is not None and name.endswith(".weight") and linear in self.linears:
            a, b = (self._read(self.keys[f"decoder.layers.0.{linear}.{f}"], layer)
                    for f in ("lora_a", "lora_b"))
            tensor = merge_into(tensor, a, b, self.scale)
        return tensor


def open_checkpoint(model: ModelConfig, ckpt: Path) -> MegatronTensors:
    """The tensors to export or merge: the checkpoint's own, or for an adapter checkpoint the
    base's with the adapters merged in."""
    return MergedReader(model, ckpt) if model.lora is not None else MegatronTensors(model, ckpt)


def iter_merged_tensors(model: ModelConfig, ckpt: Path) -> Iterator[dict[str, torch.Tensor]]:
    """Like ``checkpoint_reader.iter_megatron_tensors`` for an adapter checkpoint: base tensors
    with the adapters merged; trained head tensors from the adapter checkpoint."""
    return MergedReader(model, ckpt).groups()


def write_peft_adapter(model: ModelConfig, ckpt: Path, out: Path, *, base_name: str) -> Path:
    """The unmerged adapter in PEFT's format for the exported HF base (``AutoModel`` names)."""
    from safetensors.torch import save_file

    adapter = StateDictAdapter(model, export_family(model))
    reader = CheckpointReader(ckpt)
    keys = checkpoint_keys(model)
    tensors, modules = {}, set()
    for target in model.lora.target_modules:
        linear = LINEAR[target]
        for i in range(model.num_layers):
            a = reader.read(keys[f"decoder.layers.0.{linear}.lora_a"], i)
            b = reader.read(keys[f"decoder.layers.0.{linear}.lora_b"], i)
            for name, b_part in adapter.split(f"decoder.layers.{i}.{linear}.weight", b).items():
                stem = "base_model.model." + name.removesuffix(".weight")
                tensors[f"{stem}.lora_A.weight"] = a.clone()   # one copy per HF projection
                tensors[f"{stem}.lora_B.weight"] = b_part.contiguous()
                modules.add(stem.rsplit(".", 1)[-1])
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, out / "adapter_model.safetensors", metadata={"format": "pt"})
    (out / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "task_type": None, "base_model_name_or_path": base_name,
        "r": model.lora.rank, "lora_alpha": model.lora.alpha, "lora_dropout": model.lora.dropout,
        "target_modules": sorted(modules), "bias": "none", "fan_in_fan_out": False,
        "inference_mode": True, "modules_to_save": None, "use_rslora": False,
        "init_lora_weights": True}, indent=2))
    return out


def load_lora_model(model: ModelConfig, ckpt: Path, rows: int):
    """The Megatron model with adapters at TP=1 (fp32): the base an adapter checkpoint names, then
    its adapters and head (what ``--verify`` compares the merged export with)."""
    from megatron_hybridir.checkpointing.model_state import load_model_state
    from megatron_hybridir.model.builder import build_model
    from megatron_hybridir.training.adapter_checkpoint import (
        load_base_weights, load_chunk_state, trainable_sharded_state)

    ref = adapter_base(ckpt)
    chunk = build_model(model, ParallelConfig(), vocab_rows=rows)
    load_base_weights(ref["path"], model=[chunk])
    load_model_state(ckpt, [chunk], select=trainable_sharded_state, apply=load_chunk_state)
    return chunk.eval()
