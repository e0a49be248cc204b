"""Provenance: where a checkpoint's weights, tokenizer and sentence-transformers pipeline came from.

Why it exists: export must reproduce the model it was given (its family, tokenizer, prompts,
``max_seq_length``, pooling), and after training write exactly the prompts the training data were
tokenized with. The importer records all of it in ``provenance.json`` next to the converted
checkpoint (with the tokenizer files copied into ``tokenizer/``); the trainer copies that record,
plus the identity of its training data (the preprocessing manifest's tokenizer hash, vocabulary and
prompts), into every run directory; export reads it, so no flag has to repeat what is recorded.

What it does not do: convert tensors (``hf_import`` / ``hf_export``) or check a run's identity
(``training/run_identity``).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Optional

from megatron_hybridir.convert.mappings import ConversionError
from megatron_hybridir.model.pooling import sentence_transformers_modes

log = logging.getLogger(__name__)
FILE = "provenance.json"
FORMAT = 1
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "tokenizer.model", "vocab.json", "merges.txt", "sentencepiece.bpe.model",
                   "vocab.txt", "added_tokens.json")


def tokenizer_hash(folder: Path) -> Optional[str]:
    """The hash preprocessing records in its manifest for this tokenizer (None: no tokenizer)."""
    from megatron_hybridir.data.tokenizer import Tokenizer

    folder = Path(folder)
    if not ((folder / "tokenizer.json").exists() or (folder / "tokenizer.model").exists()):
        return None
    return Tokenizer(str(folder)).hash


def copy_tokenizer(source: Path, dest: Path) -> dict:
    """Copy the tokenizer files of ``source`` (a folder, or a tokenizer file inside one) into
    ``dest``; returns the provenance entry (files, hash, where they came from)."""
    source = Path(source)
    folder = source if source.is_dir() else source.parent
    dest.mkdir(parents=True, exist_ok=True)
    files = [n for n in TOKENIZER_FILES if (folder / n).is_file()]
    for name in files:
        shutil.copy(folder / name, dest / name)
    return {"dir": dest.name, "source": str(folder.resolve()), "files": files,
            "hash": tokenizer_hash(dest)}


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


def write(folder: Path, record: dict) -> None:
    (Path(folder) / FILE).write_text(json.dumps(record, indent=2))


def read(folder: Path) -> Optional[dict]:
    path = Path(folder) / FILE
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConversionError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None


def tokenizer_folder(folder: Path, record: Optional[dict]) -> Optional[Path]:
    """The tokenizer folder a provenance record in ``folder`` names (copied there, or its source)."""
    if not record or not record.get("tokenizer"):
        return None
    entry = record["tokenizer"]
    local = Path(folder) / entry.get("dir", "tokenizer")
    if entry.get("files") and local.is_dir():
        return local
    source = entry.get("source")
    return Path(source) if source else None


def data_prompts(record: Optional[dict]) -> Optional[dict]:
    """sentence-transformers prompts ({"query", "document"}) the training data were tokenized
    with, from a run's record of its preprocessing manifest; None when the run had no data."""
    data = (record or {}).get("data")
    if not data or data.get("prompts") is None:
        return None
    prompts = data["prompts"]
    query = prompts.get("query") or ""
    passage = prompts.get("positive", prompts.get("passage")) or ""
    out = {}
    if query:
        out["query"] = query
    if passage:
        out["document"] = passage
    return out
