"""The Hugging Face side of provenance: a model folder's sentence-transformers pipeline, and the
record ``convert_hf_to_megatron`` writes for it.

Why it exists: the importer reads an HF folder's sentence-transformers pipeline (modules, pooling
mode, prompts, ``max_seq_length``) so that the converted checkpoint, its runs and their export keep
it; the head it implies (pooling, normalisation) becomes the ModelConfig's unless the user chose.
The record itself (``provenance.json``: reading, writing, the tokenizer copy, the data prompts) is
shared with training and lives in ``checkpointing/provenance``.

What it does not do: convert tensors (``hf_import`` / ``hf_export``) or check a run's identity
(``training/run_identity``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from megatron_hybridir.checkpointing.provenance import FORMAT
from megatron_hybridir.convert.mappings import ConversionError
from megatron_hybridir.model.pooling import sentence_transformers_modes


def read_sentence_transformers(folder: Path) -> Optional[dict]:
    """The sentence-transformers pipeline of an HF folder (None when it has no modules.json)."""
    folder = Path(folder)
    if not (folder / "modules.json").exists():
        return None

    def load(name: str) -> dict:
        path = folder / name
        return json.loads(path.read_text()) if path.exists() else {}

    modules = load("modules.json")
    pooling = {}
    for module in modules:
        if module["type"].endswith(".Pooling"):
            pooling = load(f"{module['path']}/config.json")
    st_config = load("config_sentence_transformers.json")
    bert_config = load("sentence_bert_config.json")
    return {"modules": [m["type"].rsplit(".", 1)[-1] for m in modules],
            "max_seq_length": bert_config.get("max_seq_length"),
            "do_lower_case": bert_config.get("do_lower_case", False),
            "prompts": st_config.get("prompts", {}),
            "default_prompt_name": st_config.get("default_prompt_name"),
            "similarity_fn_name": st_config.get("similarity_fn_name"),
            "pooling": pooling}



def head_from_sentence_transformers(st: Optional[dict], *, pooling_given: bool = False) -> dict:
    """ModelConfig head fields implied by a sentence-transformers pipeline (pooling, normalize);
    the pooling mode is not read when the caller chose one."""
    if not st:
        return {}
    out = {"normalize": "Normalize" in st["modules"]}
    if pooling_given:
        return out
    # sentence-transformers Pooling flag -> model.pooling, from the pooling registry
    known = {flag: name for name, flag in sentence_transformers_modes().items()}
    modes = [name for key, name in known.items() if st["pooling"].get(key)]
    other = [k for k, v in st["pooling"].items()
             if k.startswith("pooling_mode_") and v and k not in known]
    if other or len(modes) > 1:
        here = ", ".join(f"{name} = {flag}" for flag, name in known.items())
        raise ConversionError(f"sentence-transformers pooling {other or modes} has no counterpart "
                              f"here ({here}); pass --pooling to choose one")
    if modes:
        out["pooling"] = modes[0]
    return out



def for_import(hf_dir: Path, hf_config: dict, family: str, tokenizer: dict) -> dict:
    return {"format": FORMAT, "family": family,
            "hf": {"source": str(Path(hf_dir).resolve()), "model_type": hf_config.get("model_type"),
                   "architectures": hf_config.get("architectures")},
            "tokenizer": tokenizer,
            "sentence_transformers": read_sentence_transformers(hf_dir)}

