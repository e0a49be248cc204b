"""What the HF export adds for runs that trained more than one plain embedding: merged LoRA
adapters (``lora_merge``), the unmerged adapter in PEFT's format, the Matryoshka dimensions, and
the per-task instruction prompts.

Why it exists: ``hf_export`` writes any checkpoint; these are the run-specific additions, kept out
of it so that its only hooks are ``lora_merge.open_checkpoint`` (the merged tensors) and
:func:`write_extras`.

Matryoshka: sentence-transformers has one ``truncate_dim`` per loaded model, not a list, so the
trained prefixes go to a sidecar ``matryoshka.json`` ({"dims": [...], "weights": [...]}), which
evaluation reports can cite; ``evaluation.matryoshka`` truncates stored embeddings per dimension.

Task prompts: a model trained with task instructions (the preprocessing manifest's
``instructions``, copied into the run's ``provenance.json``) needs them at inference, one per task.
They go into the sentence-transformers ``prompts`` under ``"<mteb task>-query"`` (e.g.
``SciFact-query``): the first name mteb's per-task lookup tries for a task's queries (documents
fall through to ``document``), and a name ``encode(..., prompt_name=)`` takes.

What it does not do: verify (``verify``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

import yaml

from megatron_hybridir.config import LossConfig, ModelConfig, embedding_dim
from megatron_hybridir.config.instructions import DEFAULT_TEMPLATE, mteb_task_prompts
from megatron_hybridir.convert import lora_merge
from megatron_hybridir.convert.mappings import ConversionError

PEFT_FOLDER = "lora_adapter"
log = logging.getLogger(__name__)


def task_prompts(record: Optional[dict], *, task_instructions: Optional[dict] = None,
                 instruction_template: Optional[str] = None) -> dict[str, str]:
    """``{"<mteb task>-query": prompt}``: the documented instructions (``config/instructions.py``)
    with ``task_instructions`` ({task: instruction}) added or replacing, under
    ``instruction_template`` (default: the template the training data used, else E5-Mistral's).
    ``task_instructions=None`` writes them only when the training data were instructed ({}: the
    documented ones alone)."""
    trained = ((record or {}).get("data") or {}).get("instructions")
    if task_instructions is None and not trained:
        if instruction_template is not None:
            log.warning("instruction_template %r ignored: no task instructions are exported "
                        "(the training data had none; pass task_instructions)", instruction_template)
        return {}
    template = instruction_template or (trained or {}).get("template") or DEFAULT_TEMPLATE
    try:
        return mteb_task_prompts(template, task_instructions)
    except ValueError as err:
        raise ConversionError(str(err)) from None


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
        resolved = LossConfig(matryoshka_dims=dims).resolved_matryoshka_dims(embedding_dim(model))
        (out / "matryoshka.json").write_text(json.dumps(
            {"dims": [int(d) for d in resolved],
             "weights": loss.get("matryoshka_weights") or [1.0] * len(dims)}, indent=2))
    if peft_adapter:
        if model.lora is None:
            raise ConversionError("--peft-adapter: the checkpoint has no LoRA adapters "
                                  "(model.lora is not set)")
        lora_merge.write_peft_adapter(model, ckpt, out / PEFT_FOLDER, base_name=base_name or "..")
