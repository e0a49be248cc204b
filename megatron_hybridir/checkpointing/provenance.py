"""``provenance.json``: where a checkpoint's weights, tokenizer and sentence-transformers pipeline
came from, and which prompts its training data were tokenized with.

Why it exists: export must reproduce the model it was given (its family, tokenizer, prompts,
``max_seq_length``, pooling), and after training write exactly the prompts the training data were
tokenized with. The importer records all of it in ``provenance.json`` next to the converted
checkpoint (with the tokenizer files copied into ``tokenizer/``); the trainer copies that record,
plus the identity of its training data (the preprocessing manifest's tokenizer hash, vocabulary and
prompts), into every run directory; export reads it, so no flag has to repeat what is recorded.
This module reads and writes the record and its tokenizer copy, for training and conversion alike.

What it does not do: read Hugging Face / sentence-transformers folders (``convert/provenance``),
convert tensors (``convert/``) or check a run's identity (``training/run_identity``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Optional

from megatron_hybridir.checkpointing.errors import CheckpointError

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


def write(folder: Path, record: dict) -> None:
    (Path(folder) / FILE).write_text(json.dumps(record, indent=2))


def read(folder: Path) -> Optional[dict]:
    path = Path(folder) / FILE
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None


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
