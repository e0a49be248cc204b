"""What the HF export adds for runs that trained more than one plain embedding: merged LoRA
adapters (``lora_merge``), the unmerged adapter in PEFT's format, and the Matryoshka dimensions.

Why it exists: ``hf_export`` writes any checkpoint; these are the run-specific additions, kept out
of it so that its only hooks are ``lora_merge.open_checkpoint`` (the merged tensors) and
:func:`write_extras`.

Matryoshka: sentence-transformers has one ``truncate_dim`` per loaded model, not a list, so the
trained prefixes go to a sidecar ``matryoshka.json`` ({"dims": [...], "weights": [...]}), which
evaluation reports can cite; ``evaluation.matryoshka`` truncates stored embeddings per dimension.

What it does not do: verify (``verify``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import yaml

from megatron_hybridir.config import ModelConfig, embedding_dim
from megatron_hybridir.convert import lora_merge
from megatron_hybridir.convert.mappings import ConversionError

PEFT_FOLDER = "lora_adapter"


def run_loss_section(checkpoint: Path) -> dict:
    """The ``loss`` section of the run that wrote ``checkpoint`` ({} for converted folders)."""
    checkpoint = Path(checkpoint)
    run_dir = checkpoint.parent.parent if checkpoint.name.startswith("step_") else checkpoint
    config = run_dir / "config.yaml"
    if not config.exists():
        return {}
    return (yaml.safe_load(config.read_text()) or {}).get("loss") or {}


def write_extras(out: Path, *, model: ModelConfig, ckpt: Path, checkpoint: Path,
                 peft_adapter: bool = False, base_name: Optional[str] = None) -> None:
    loss = run_loss_section(checkpoint)
    dims = loss.get("matryoshka_dims")
    if dims:
        full = embedding_dim(model)
        (out / "matryoshka.json").write_text(json.dumps(
            {"dims": [full if d == "full" else int(d) for d in dims],
             "weights": loss.get("matryoshka_weights") or [1.0] * len(dims)}, indent=2))
    if peft_adapter:
        if model.lora is None:
            raise ConversionError("--peft-adapter: the checkpoint has no LoRA adapters "
                                  "(model.lora is not set)")
        lora_merge.write_peft_adapter(model, ckpt, out / PEFT_FOLDER, base_name=base_name or "..")
