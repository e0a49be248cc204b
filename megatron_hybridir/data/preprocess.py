"""Tokenize parallel-QA sources into Megatron indexed datasets (mmap .bin/.idx) on disk.

Why it exists: at 30B scale the training corpus must not live in Python objects. Each (field,
language) becomes one Megatron-Core ``IndexedDataset`` (one sequence per entry), written through
Megatron's builder, and small numpy arrays map items to rows. Worker processes tokenize chunks in
order; the main process appends to the builders, so memory stays flat in the corpus size.

Each row holds exactly the ids the exported sentence-transformers model computes at inference for
``prompt + text`` with ``max_seq_length`` = the field's max length: the tokenizer's own special
tokens, truncation inside them, no padding (``data/tokenizer.py``; tested on real tokenizers in
tests/real/test_tokenization_contract.py). The manifest records what export and training need to
reproduce it: ``prompts`` and ``max_length`` per field, and ``tokenizer`` (content hash, files,
special tokens added).

Task instructions (``instructions``: source -> instruction) replace the query prompt of that
source's items by ``instruction_template`` with the instruction filled in (E5-Mistral / NV-Embed:
``Instruct: {task}\nQuery: ``, ``config/instructions.py``); passages keep their prompt. Each
manifest ``sources`` entry records its ``instruction`` and the ``query_prompt`` its rows carry.

The folder is written under a temporary name and renamed into place when complete
(``staging.staged_folder``): a failed run leaves the previous dataset as it was.

Layout of the output folder:
    manifest.json                   sources, tokenizer, prompts, max lengths, counts per language,
                                    and the size of every other file (checked on load)
    {query,positive,negative}.{lang}.bin/.idx   only where the count is > 0 (Megatron cannot mmap
                                    an empty file; plain pairs have no negatives)
    query.{lang}.row.npy, positive.{lang}.row.npy   [items] int64 row or -1 (absent)
    negative.{lang}.start.npy       [items + 1] int64 CSR offsets into negative.{lang}
    {positive,negative}.{lang}.cid.npy  [rows] int64 content id of each row's text
                                    (data/content_id.py), for false-negative masking in the loss
    {positive,negative}.{lang}.teacher.npy  [rows] float32 teacher score of each row for its item's
                                    query in that language (distillation; NaN: none), written
                                    when any record has ``teacher_scores``; the manifest's
                                    ``teacher_scores.items`` counts the items that have them
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

from megatron_hybridir.config.instructions import (
    DEFAULT_TEMPLATE,
    check_template,
    instruction_prompt,
)
from megatron_hybridir.data.content_id import content_id
from megatron_hybridir.data.readers import (
    ParallelItem,
    ReadReport,
    check_language_coverage,
    read_items,
)
from megatron_hybridir.data.staging import file_sizes, staged_folder
from megatron_hybridir.data.tokenizer import Tokenizer

FIELDS = ("query", "positive", "negative")


@dataclass
class PreprocessConfig:
    sources: list[str]
    """JSONL / Parquet paths or ``datasets`` names."""
    languages: list[str]
    """Languages to keep (ISO codes as in the records)."""
    tokenizer: str
    """HF tokenizer folder / tokenizer.json, or a SentencePiece .model."""
    output: str
    """Folder of the indexed datasets and manifest.json."""
    prompts: dict = field(default_factory=lambda: {"query": "Query: ", "positive": "Passage: ",
                                                   "negative": "Passage: "})
    """Prompt per field (E5 style by default), prepended to the text before tokenization exactly as
    sentence-transformers prepends a prompt at inference. Queries get the export's ``query`` prompt;
    positives and negatives are both documents there, so their prompts must be equal. "" = none."""
    max_length: dict = field(default_factory=lambda: {"query": 64, "positive": 256,
                                                      "negative": 256})
    """Tokens per field, special tokens included (sentence-transformers' ``max_seq_length``)."""
    append_eos: bool = False
    """Kept so old configs load; True is refused. An EOS appended here is one inference never sees
    (last-token pooling would read another token): a model that needs EOS gets it from its tokenizer
    (``add_eos_token`` in tokenizer_config.json, or its post-processor), which export copies."""
    special_tokens: bool = True
    """Kept so old configs load: the tokenizer's own special tokens (``[CLS] ... [SEP]``, ``<s> ...
    </s>``, Llama 3's BOS) are always added, as at inference; False is refused."""
    instructions: dict = field(default_factory=dict)
    """Task instruction per source (key: the ``sources`` entry exactly as given), put on that
    source's queries only through ``instruction_template`` (which then replaces ``prompts.query``
    for them). Sources not named keep ``prompts.query``; {} (default) = no instructions."""
    instruction_template: str = DEFAULT_TEMPLATE
    """How an instruction becomes the query prompt: ``{task}`` is the instruction, and it must end
    with ``{text}`` (the query), since sentence-transformers can only prepend a prompt."""
    workers: int = 2
    """Tokenizer processes."""
    chunk_size: int = 512
    """Records per worker task."""
    on_error: str = "raise"
    """raise: stop at the first malformed record (file, line, field); skip: drop it and count it."""


_WORKER: dict = {}


def _init_worker(config: dict, tokenizer_state: dict) -> None:
    _WORKER["cfg"] = config
    _WORKER["tok"] = Tokenizer(config["tokenizer"], state=tokenizer_state)
    _WORKER["query_prompts"] = query_prompts(PreprocessConfig(**config))


def query_prompts(config: PreprocessConfig) -> list[str]:
    """The query prompt of each source, in ``sources`` order: its instruction under the template,
    else ``prompts.query``."""
    return [instruction_prompt(config.instructions[s], config.instruction_template,
                               field=f"instructions[{s!r}]")
            if s in config.instructions else config.prompts["query"] for s in config.sources]


def _encode_field(texts: list[str], fieldname: str, prompts: Optional[list[str]] = None
                  ) -> list[list[int]]:
    """Token ids of ``prompt + text``: the field's prompt, or one prompt per text (queries)."""
    cfg, tok = _WORKER["cfg"], _WORKER["tok"]
    limit = cfg["max_length"][fieldname]
    prompts = prompts or [cfg["prompts"][fieldname]] * len(texts)
    return tok.encode([p + t for p, t in zip(prompts, texts)], limit)


def check_config(config: PreprocessConfig, tok: Tokenizer) -> None:
    """Refuse settings under which training would see other ids than inference."""
    if config.append_eos:
        raise ValueError("preprocess: append_eos=True is refused: inference would not append that "
                         "EOS, so training and the exported model would see different final tokens; "
                         "a model that needs EOS must get it from its tokenizer (add_eos_token in "
                         "tokenizer_config.json, or the tokenizer.json post-processor)")
    if not config.special_tokens:
        raise ValueError("preprocess: special_tokens=False is refused: the exported model's "
                         "tokenizer adds its special tokens at inference, so training must too")
    for name, table in (("prompts", config.prompts), ("max_length", config.max_length)):
        if set(table) != set(FIELDS):
            raise ValueError(f"preprocess: {name} has fields {sorted(table)}; expected exactly "
                             f"{list(FIELDS)}")
    if config.prompts["negative"] != config.prompts["positive"]:
        raise ValueError(f"preprocess: prompts: negative {config.prompts['negative']!r} != positive "
                         f"{config.prompts['positive']!r}; both are documents at inference, where "
                         f"one document prompt applies")
    for fieldname, limit in config.max_length.items():
        if not isinstance(limit, int) or limit <= tok.num_special_tokens:
            raise ValueError(f"preprocess: max_length {fieldname}={limit!r}: expected an integer "
                             f"above the tokenizer's {tok.num_special_tokens} special tokens")
    _check_instructions(config)


def _check_instructions(config: PreprocessConfig) -> None:
    if not isinstance(config.instructions, dict):
        raise ValueError(f"preprocess: instructions: expected a mapping source -> instruction, got "
                         f"{config.instructions!r}")
    check_template(config.instruction_template, field="preprocess: instruction_template")
    for source, text in config.instructions.items():
        if source not in config.sources:
            raise ValueError(f"preprocess: instructions: {source!r} is not one of the sources "
                             f"{config.sources} (name a source exactly as given in sources)")
        instruction_prompt(text, config.instruction_template,
                           field=f"preprocess: instructions[{source!r}]")


def _tokenize_chunk(items: list[tuple[int, ParallelItem]]) -> list[dict]:
    """Per (source index, item): {field: {lang: [token lists]}} (one list for query/positive, k
    for negatives); queries carry their source's prompt."""
    texts, keys = {f: [] for f in FIELDS}, []
    prompts = []
    for n, (source, item) in enumerate(items):
        for lang in item.languages:
            keys.append((n, "query", lang, len(texts["query"])))
            texts["query"].append(item.query[lang])
            prompts.append(_WORKER["query_prompts"][source])
            keys.append((n, "positive", lang, len(texts["positive"])))
            texts["positive"].append(item.positive[lang])
        for neg in item.negatives:
            for lang, text in neg.items():
                keys.append((n, "negative", lang, len(texts["negative"])))
                texts["negative"].append(text)
    encoded = {f: _encode_field(texts[f], f, prompts if f == "query" else None) if texts[f] else []
               for f in FIELDS}
    out = [{f: {} for f in FIELDS} for _ in items]
    for n, fieldname, lang, pos in keys:
        out[n][fieldname].setdefault(lang, []).append(encoded[fieldname][pos])
    return out


def _tokenize_chunk_with_ids(items: list[tuple[int, ParallelItem]]) -> list[dict]:
    """``_tokenize_chunk`` plus ``"cid"``: {field: {lang: [content ids]}} for the passage fields."""
    out = _tokenize_chunk(items)
    for (_, item), tokens in zip(items, out):
        tokens["cid"] = {"positive": {l: [content_id(item.positive[l])] for l in item.languages},
                         "negative": {}}
        for neg in item.negatives:
            for lang, text in neg.items():
                tokens["cid"]["negative"].setdefault(lang, []).append(content_id(text))
        tokens["teacher"] = item.teacher_scores
    return out


def _chunks(iterator: Iterator, size: int) -> Iterator[list]:
    while chunk := list(islice(iterator, size)):
        yield chunk


class _Builders(dict):
    """Megatron builders created at the first row, so a (field, language) without rows leaves no
    empty ``.bin`` behind (Megatron's reader cannot mmap one)."""

    def __init__(self, folder: Path, dtype):
        super().__init__()
        self.folder, self.dtype = folder, dtype

    def __missing__(self, key):
        from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

        fieldname, lang = key
        builder = self[key] = IndexedDatasetBuilder(str(self.folder / f"{fieldname}.{lang}.bin"),
                                                    dtype=self.dtype)
        return builder


def preprocess(config: PreprocessConfig, *, progress: bool = True) -> dict:
    """Write the tokenized dataset; return the manifest (also written to manifest.json)."""
    with staged_folder(config.output, marker="manifest.json",
                       owned_suffixes=(".bin", ".idx", ".npy")) as stage:
        return _preprocess_into(config, stage, progress=progress)


def _preprocess_into(config: PreprocessConfig, out: Path, *, progress: bool) -> dict:
    tok = Tokenizer(config.tokenizer)
    check_config(config, tok)
    source_prompts = query_prompts(config)
    dtype = np.int32 if tok.vocab_size > 65500 else np.uint16
    builders = _Builders(out, dtype)
    rows = {(f, l): 0 for f in FIELDS for l in config.languages}
    item_rows = {(f, l): [] for f in ("query", "positive") for l in config.languages}
    neg_start = {l: [0] for l in config.languages}
    masks: list[int] = []
    cids = {(f, l): [] for f in ("positive", "negative") for l in config.languages}
    reports = [ReadReport(s) for s in config.sources]
    lang_bit = {l: i for i, l in enumerate(config.languages)}

    item_sources: list[int] = []
    teacher = {(f, l): [] for f in ("positive", "negative") for l in config.languages}
    teacher_items = 0

    def items() -> Iterator[ParallelItem]:
        for index, (source, report) in enumerate(zip(config.sources, reports)):
            for item in read_items(source, languages=config.languages, on_error=config.on_error,
                                   report=report):
                item_sources.append(index)
                yield index, item

    ctx = mp.get_context("spawn")
    with ctx.Pool(config.workers, initializer=_init_worker,
                  initargs=(asdict(config), tok.state)) as pool, \
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
                    _append_teacher(teacher, tokens, lang)
                    negs = tokens["negative"].get(lang, [])
                    for seq in negs:
                        builders[("negative", lang)].add_item(_tensor(seq))
                    rows[("negative", lang)] += len(negs)
                    neg_start[lang].append(rows[("negative", lang)])
                masks.append(mask)
                teacher_items += tokens["teacher"] is not None
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
    if teacher_items:
        for (fieldname, lang), values in teacher.items():
            np.save(out / f"{fieldname}.{lang}.teacher.npy", np.asarray(values, dtype=np.float32))
    np.save(out / "items.langs.npy", np.asarray(masks, dtype=np.uint64))
    np.save(out / "items.source.npy", np.asarray(item_sources, dtype=np.int32))
    check_language_coverage(config.languages, reports)
    counts = {f"{f}.{l}": rows[(f, l)] for (f, l) in rows}
    manifest = {"config": asdict(config), "tokenizer_hash": tok.hash,
                "vocab_size": tok.vocab_size, "pad_id": tok.pad_id, "eos_id": tok.eos_id,
                "num_items": len(masks), "counts": counts,
                "prompts": dict(config.prompts), "max_length": dict(config.max_length),
                "tokenizer": tokenizer_record(tok),
                "teacher_scores": {"items": teacher_items},
                "sources": [{"source": r.source, "read": r.read, "kept": r.kept,
                             "skipped": dict(r.skipped), "dropped": dict(r.dropped),
                             "instruction": config.instructions.get(r.source),
                             "query_prompt": prompt}
                            for r, prompt in zip(reports, source_prompts)]}
    if config.instructions:
        manifest["instructions"] = {"template": config.instruction_template,
                                    "sources": dict(config.instructions)}
    manifest["files"] = file_sizes(out, exclude=("manifest.json",))
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    if progress:
        for report in reports:
            print(report.summary())
    return manifest


def _append_teacher(teacher: dict, tokens: dict, lang: str) -> None:
    """Teacher scores of the item's rows in ``lang``, one per row appended to the token files
    (positive: a row where the item has query and positive; negatives: every row), NaN without."""
    scores = (tokens["teacher"] or {}).get(lang)
    if tokens["positive"].get(lang) and tokens["query"].get(lang):
        teacher[("positive", lang)].append(scores[0] if scores else float("nan"))
    count = len(tokens["negative"].get(lang, []))
    teacher[("negative", lang)] += scores[1:] if scores else [float("nan")] * count


def tokenizer_record(tok: Tokenizer) -> dict:
    """The manifest's ``tokenizer`` entry: what produced the ids, for export and training checks."""
    return {"path": tok.path, "hash": tok.hash, "files": tok.files, "add_special_tokens": True,
            "special_tokens": tok.special_tokens, "truncation_side": tok.truncation_side,
            "vocab_size": tok.vocab_size, "pad_id": tok.pad_id}


def _tensor(ids: list[int]):
    import torch

    return torch.tensor(ids, dtype=torch.int64)
