"""Tokenize parallel-QA sources into Megatron indexed datasets (mmap .bin/.idx) on disk.

Why it exists: at 30B scale the training corpus must not live in Python objects. Each (field,
language) becomes one Megatron-Core ``IndexedDataset`` (one sequence per entry), written through
Megatron's builder, and small numpy arrays map items to rows. Worker processes tokenize chunks in
order; the main process appends to the builders, so memory stays flat in the corpus size.

Layout of the output folder:
    manifest.json                   sources, tokenizer hash, prompts, lengths, counts per language
    {query,positive,negative}.{lang}.bin/.idx
    query.{lang}.row.npy, positive.{lang}.row.npy   [items] int64 row or -1 (absent)
    negative.{lang}.start.npy       [items + 1] int64 CSR offsets into negative.{lang}
    {positive,negative}.{lang}.cid.npy  [rows] int64 content id of each row's text
                                    (data/content_id.py), for false-negative masking in the loss
    items.langs.npy                 [items] uint64 bitmask of languages with query and positive
    items.source.npy                [items] int32 index into ``sources`` (for mixture weights)
"""

from __future__ import annotations

import json
import multiprocessing as mp
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
from tqdm import tqdm

from megatron_hybridir.data.content_id import content_id
from megatron_hybridir.data.readers import (
    ParallelItem,
    ReadReport,
    check_language_coverage,
    read_items,
)
from megatron_hybridir.data.tokenizer import Tokenizer

FIELDS = ("query", "positive", "negative")


@dataclass
class PreprocessConfig:
    sources: list[str]
    languages: list[str]
    tokenizer: str
    output: str
    prompts: dict = field(default_factory=lambda: {"query": "Query: ", "positive": "Passage: ",
                                                   "negative": "Passage: "})
    """Instruction prefixes per field (E5 style by default)."""
    max_length: dict = field(default_factory=lambda: {"query": 64, "positive": 256,
                                                      "negative": 256})
    append_eos: bool = True
    """Append EOS (needed by last-token pooling of decoder LLMs)."""
    special_tokens: bool = False
    """Wrap each text in the tokenizer's own special tokens (``<s> ... </s>`` / ``[CLS] ... [SEP]``),
    as sentence-transformers does at inference: what BERT-style encoders (XLM-R, LaBSE) need, CLS
    pooling reading the first token. Use instead of ``append_eos``."""
    workers: int = 2
    chunk_size: int = 512
    on_error: str = "raise"


_WORKER: dict = {}


def _init_worker(config: dict) -> None:
    _WORKER["cfg"] = config
    _WORKER["tok"] = Tokenizer(config["tokenizer"])


def _encode_field(texts: list[str], fieldname: str) -> list[list[int]]:
    cfg, tok = _WORKER["cfg"], _WORKER["tok"]
    prompt, limit = cfg["prompts"][fieldname], cfg["max_length"][fieldname]
    if cfg["special_tokens"]:
        return tok.encode_with_special_tokens([prompt + t for t in texts], limit)
    room = limit - (1 if cfg["append_eos"] and tok.eos_id is not None else 0)
    out = []
    for ids in tok.encode([prompt + t for t in texts]):
        ids = ids[:room]
        if cfg["append_eos"] and tok.eos_id is not None:
            ids = ids + [tok.eos_id]
        out.append(ids)
    return out


def _tokenize_chunk(items: list[ParallelItem]) -> list[dict]:
    """Per item: {field: {lang: [token lists]}} (one list for query/positive, k for negatives)."""
    texts, keys = {f: [] for f in FIELDS}, []
    for n, item in enumerate(items):
        for lang in item.languages:
            keys.append((n, "query", lang, len(texts["query"])))
            texts["query"].append(item.query[lang])
            keys.append((n, "positive", lang, len(texts["positive"])))
            texts["positive"].append(item.positive[lang])
        for neg in item.negatives:
            for lang, text in neg.items():
                keys.append((n, "negative", lang, len(texts["negative"])))
                texts["negative"].append(text)
    encoded = {f: _encode_field(texts[f], f) if texts[f] else [] for f in FIELDS}
    out = [{f: {} for f in FIELDS} for _ in items]
    for n, fieldname, lang, pos in keys:
        out[n][fieldname].setdefault(lang, []).append(encoded[fieldname][pos])
    return out


def _tokenize_chunk_with_ids(items: list[ParallelItem]) -> list[dict]:
    """``_tokenize_chunk`` plus ``"cid"``: {field: {lang: [content ids]}} for the passage fields."""
    out = _tokenize_chunk(items)
    for item, tokens in zip(items, out):
        tokens["cid"] = {"positive": {l: [content_id(item.positive[l])] for l in item.languages},
                         "negative": {}}
        for neg in item.negatives:
            for lang, text in neg.items():
                tokens["cid"]["negative"].setdefault(lang, []).append(content_id(text))
    return out


def _chunks(iterator: Iterator, size: int) -> Iterator[list]:
    while chunk := list(islice(iterator, size)):
        yield chunk


def preprocess(config: PreprocessConfig, *, progress: bool = True) -> dict:
    """Write the tokenized dataset; return the manifest (also written to manifest.json)."""
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    if config.special_tokens and config.append_eos:
        raise ValueError("preprocess: special_tokens and append_eos both set; the tokenizer's "
                         "special tokens already end each text (set append_eos=False)")
    tok = Tokenizer(config.tokenizer)
    if config.special_tokens:
        tok.encode_with_special_tokens(["check"], 8)   # fail now, not in a worker
    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    dtype = np.int32 if tok.vocab_size > 65500 else np.uint16
    builders = {(f, l): IndexedDatasetBuilder(str(out / f"{f}.{l}.bin"), dtype=dtype)
                for f in FIELDS for l in config.languages}
    rows = {key: 0 for key in builders}
    item_rows = {(f, l): [] for f in ("query", "positive") for l in config.languages}
    neg_start = {l: [0] for l in config.languages}
    masks: list[int] = []
    cids = {(f, l): [] for f in ("positive", "negative") for l in config.languages}
    reports = [ReadReport(s) for s in config.sources]
    lang_bit = {l: i for i, l in enumerate(config.languages)}

    item_sources: list[int] = []

    def items() -> Iterator[ParallelItem]:
        for index, (source, report) in enumerate(zip(config.sources, reports)):
            for item in read_items(source, languages=config.languages, on_error=config.on_error,
                                   report=report):
                item_sources.append(index)
                yield item

    ctx = mp.get_context("spawn")
    with ctx.Pool(config.workers, initializer=_init_worker,
                  initargs=(asdict(config),)) as pool, \
            tqdm(desc="tokenizing", unit=" items", disable=not progress) as bar:
        for chunk in pool.imap(_tokenize_chunk_with_ids, _chunks(items(), config.chunk_size)):
            for tokens in chunk:
                mask = 0
                for lang in config.languages:
                    for fieldname in ("query", "positive"):
                        seqs = tokens[fieldname].get(lang)
                        if seqs:
                            builders[(fieldname, lang)].add_item(_tensor(seqs[0]))
                            item_rows[(fieldname, lang)].append(rows[(fieldname, lang)])
                            rows[(fieldname, lang)] += 1
                        else:
                            item_rows[(fieldname, lang)].append(-1)
                    if lang in tokens["query"]:
                        mask |= 1 << lang_bit[lang]
                    cids[("positive", lang)] += tokens["cid"]["positive"].get(lang, [])
                    cids[("negative", lang)] += tokens["cid"]["negative"].get(lang, [])
                    negs = tokens["negative"].get(lang, [])
                    for seq in negs:
                        builders[("negative", lang)].add_item(_tensor(seq))
                    rows[("negative", lang)] += len(negs)
                    neg_start[lang].append(rows[("negative", lang)])
                masks.append(mask)
            bar.update(len(chunk))
    for (fieldname, lang), builder in builders.items():
        builder.end_document()  # one "document" per file; rows are addressed per sequence
        builder.finalize(str(out / f"{fieldname}.{lang}.idx"))
    for (fieldname, lang), values in item_rows.items():
        np.save(out / f"{fieldname}.{lang}.row.npy", np.asarray(values, dtype=np.int64))
    for lang, starts in neg_start.items():
        np.save(out / f"negative.{lang}.start.npy", np.asarray(starts, dtype=np.int64))
    for (fieldname, lang), values in cids.items():
        np.save(out / f"{fieldname}.{lang}.cid.npy", np.asarray(values, dtype=np.int64))
    np.save(out / "items.langs.npy", np.asarray(masks, dtype=np.uint64))
    np.save(out / "items.source.npy", np.asarray(item_sources, dtype=np.int32))
    check_language_coverage(config.languages, reports)
    counts = {f"{f}.{l}": rows[(f, l)] for (f, l) in rows}
    manifest = {"config": asdict(config), "tokenizer_hash": tok.hash,
                "vocab_size": tok.vocab_size, "pad_id": tok.pad_id, "eos_id": tok.eos_id,
                "num_items": len(masks), "counts": counts,
                "sources": [{"source": r.source, "read": r.read, "kept": r.kept,
                             "skipped": dict(r.skipped)} for r in reports]}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    if progress:
        for report in reports:
            print(report.summary())
    return manifest


def _tensor(ids: list[int]):
    import torch

    return torch.tensor(ids, dtype=torch.int64)
