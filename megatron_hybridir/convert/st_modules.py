"""The sentence-transformers files of an HF export: ``modules.json`` and its module folders.

Why it exists: an export is meant for ``SentenceTransformer(path)`` and mteb as well as
``AutoModel``. The files use the long-standing layout (``modules.json``, ``1_Pooling``, ``2_Dense``
for the projection — after a ``Dense`` + tanh for a BERT pooler — and ``Normalize``), with the
query and passage prompts in ``config_sentence_transformers.json``. Settings the source pipeline
had (recorded on import, ``convert/provenance``) are kept unless the model changed them.

What it does not do: write the transformer's weights or config (``hf_export``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import torch

from megatron_hybridir.config import ModelConfig
from megatron_hybridir.convert.mappings import ConversionError
from megatron_hybridir.model.pooling import sentence_transformers_modes

DENSE = "sentence_transformers.models.Dense"


def pooling_mode(model: ModelConfig) -> str:
    """The sentence-transformers ``Pooling`` flag of ``model.pooling`` (from the pooling
    registry); a type without one (latent attention) cannot be exported."""
    modes = sentence_transformers_modes()
    if model.pooling not in modes:
        raise ConversionError(f"model.pooling={model.pooling!r} has no sentence-transformers / HF "
                              f"equivalent; export supports {sorted(modes)}")
    return modes[model.pooling]


def _dense_module(out: Path, folder: str, weight: torch.Tensor, bias: Optional[torch.Tensor],
                  activation: str) -> None:
    """A sentence-transformers ``Dense`` module folder (config + safetensors)."""
    from safetensors.torch import save_file

    (out / folder).mkdir()
    (out / folder / "config.json").write_text(json.dumps({
        "in_features": weight.shape[1], "out_features": weight.shape[0], "bias": bias is not None,
        "activation_function": activation}))
    tensors = {"linear.weight": weight.contiguous()}
    if bias is not None:
        tensors["linear.bias"] = bias.contiguous()
    save_file(tensors, out / folder / "model.safetensors")


def _pooling_config(model: ModelConfig, recorded: dict) -> dict:
    pooling = {"word_embedding_dimension": model.hidden_size, "pooling_mode_cls_token": False,
               "pooling_mode_mean_tokens": False, "pooling_mode_max_tokens": False,
               "pooling_mode_mean_sqrt_len_tokens": False, "pooling_mode_weightedmean_tokens": False,
               "pooling_mode_lasttoken": False, "include_prompt": True}
    pooling.update({k: v for k, v in (recorded.get("pooling") or {}).items()
                    if not k.startswith("pooling_mode_") and k != "word_embedding_dimension"})
    pooling[pooling_mode(model)] = True
    return pooling


def write_modules(out: Path, model: ModelConfig, head: dict[str, torch.Tensor], prompts: dict,
                  max_seq_length: int, recorded: Optional[dict]) -> None:
    """modules.json and module configs into ``out``. ``head``: the Megatron head tensors
    (``head.pooler.*``, ``head.projection.weight``); ``recorded``: the source pipeline (provenance)."""
    recorded = recorded or {}
    modules = [("", "sentence_transformers.models.Transformer")]
    pooling = _pooling_config(model, recorded)
    (out / "1_Pooling").mkdir()
    (out / "1_Pooling" / "config.json").write_text(json.dumps(pooling, indent=2))
    modules.append(("1_Pooling", "sentence_transformers.models.Pooling"))
    if model.pooler:                          # BERT pooler (LaBSE): dense + tanh
        path = f"{len(modules)}_Dense"
        _dense_module(out, path, head["head.pooler.dense.weight"], head["head.pooler.dense.bias"],
                      "torch.nn.modules.activation.Tanh")
        modules.append((path, DENSE))
    if model.projection_dim:
        path = f"{len(modules)}_Dense"
        _dense_module(out, path, head["head.projection.weight"], None, "torch.nn.modules.linear.Identity")
        modules.append((path, DENSE))
    if model.normalize:
        path = f"{len(modules)}_Normalize"
        (out / path).mkdir()
        modules.append((path, "sentence_transformers.models.Normalize"))
    (out / "modules.json").write_text(json.dumps(
        [{"idx": i, "name": str(i), "path": path, "type": kind} for i, (path, kind) in enumerate(modules)],
        indent=2))
    (out / "sentence_bert_config.json").write_text(json.dumps(
        {"max_seq_length": max_seq_length, "do_lower_case": bool(recorded.get("do_lower_case"))}))
    similarity = recorded.get("similarity_fn_name") or ("cosine" if model.normalize else "dot")
    default_prompt = recorded.get("default_prompt_name")
    # "document" is the name sentence-transformers' encode_document and mteb look up for passages.
    (out / "config_sentence_transformers.json").write_text(json.dumps(
        {"prompts": prompts, "default_prompt_name": default_prompt if default_prompt in prompts
         else None, "similarity_fn_name": similarity}, indent=2))
