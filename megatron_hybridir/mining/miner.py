"""Mine hard negatives per language with any HF / sentence-transformers model, resumably.

Why it exists: the training formats accept hard negatives but users had no way to make them. For
every item and every language l in which it has a query and a positive, the query in l searches the
pool of language-l passages (every item's positive in l, plus optional extra corpus passages), so
monolingual batches get same-language negatives and cross-lingual batches negatives in the
passage's language (the collator takes negatives in the passage language). ``select.py`` removes
the item's positive in every language, its copies and (optionally) candidates within a margin of
the positive's score, then draws k from a rank window.

Scale and resumption, in the work folder:
  spool-<key>/   the pools and queries as disk text stores (texts never all in RAM)
  cache/         pool embeddings through ``evaluation.encoder.encode_corpus`` (token-count-sorted
                 batches, disk shards, the encoder's cache); one cache entry per ``shard_size``
                 passages, so an interruption loses at most one shard of encoding
  parts-<key>/   one file per (language, block of ``query_block`` queries), written atomically
Memory is one embedding shard (plus a block of queries and its [block, depth] candidates); a rerun
with the same settings skips everything already done.

With a teacher (``teacher.py``) the written records also carry ``teacher_scores`` of the positive
and the mined negatives, for distillation.

What it does not do: train, or re-rank the mined negatives by the teacher.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from array import array
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Iterator, Optional

import numpy as np
from tqdm import tqdm

from megatron_hybridir import atomic
from megatron_hybridir.config.ranges import Bounds, check_bounds
from megatron_hybridir.data.content_id import NO_ID
from megatron_hybridir.data.readers import DataError, ReadReport, validate_languages
from megatron_hybridir.evaluation.encoder import EncoderConfig, encode_corpus
from megatron_hybridir.evaluation.search import SearchIndex, spec_of
from megatron_hybridir.mining.pool import TextStore, TextStoreWriter
from megatron_hybridir.mining.records import RecordWriter, parsed_records, raw_records, \
    with_negatives
from megatron_hybridir.mining.select import Selection, WindowSpec, select_negatives
from megatron_hybridir.mining.teacher import make_teacher, parse_teacher, score_records

log = logging.getLogger(__name__)


@dataclass
class MiningConfig:
    input: str
    """Training records: JSONL, Parquet file/folder or a ``datasets`` name."""
    output: str
    """Where the records with mined negatives go (.jsonl or .parquet)."""
    languages: list[str]
    model: str
    """HF / sentence-transformers folder (our exports included)."""
    num_negatives: Annotated[int, Bounds(1)] = 4
    range_min: Annotated[int, Bounds(0)] = 0
    """Survivor ranks [range_min, range_max) form the window (0-based, after filtering)."""
    range_max: Annotated[int, Bounds(1)] = 100
    relative_margin: Annotated[
        Optional[float],
        Bounds(0, 1, low_open=True, optional=True, text="must lie in (0, 1] (e.g. 0.95)")] = None
    """Keep a candidate only if score < m * score(q, positive) (sign-safe); NV-Retriever: 0.95."""
    absolute_margin: Optional[float] = None
    """Keep a candidate only if score < score(q, positive) - delta."""
    sampling: str = "random"
    """random (seeded draw from the window) or top (the window's first k)."""
    seed: Annotated[int, Bounds(0)] = 0
    search_depth: Annotated[Optional[int], Bounds(1, optional=True)] = None
    """Candidates retrieved per query; default range_max + 1 (room for the positive itself)."""
    corpus: list[str] = field(default_factory=list)
    """Extra passage files (JSONL {"lang", "text"}) added to the pools."""
    index: str = "exact"
    """exact (alias flat; sharded flat search: memory one shard), ivf, hnsw, pq or a FAISS factory
    string (these hold the language's whole index in memory; a PQ factory string compresses it).
    See ``evaluation.search.IndexSpec``."""
    nprobe: Annotated[int, Bounds(1)] = 64
    """IVF lists visited per query."""
    ef_search: Annotated[int, Bounds(1)] = 256
    """HNSW search breadth."""
    nlist: Annotated[Optional[int], Bounds(1, optional=True)] = None
    """IVF lists (default 4 * sqrt(pool size))."""
    hnsw_m: Annotated[int, Bounds(1)] = 32
    """HNSW links per node."""
    shard_size: Annotated[int, Bounds(1)] = 100_000
    query_block: Annotated[int, Bounds(1)] = 16_384
    float16: bool = False
    batch_size: Annotated[int, Bounds(1)] = 64
    query_prompt: Optional[str] = None
    passage_prompt: Optional[str] = None
    max_length: Annotated[Optional[int], Bounds(1, optional=True)] = None
    normalize: bool = True
    """Cosine scores (as sentence-transformers' miner); harmless for normalised models."""
    split: str = "train"
    work_dir: Optional[str] = None
    """Default: ``<output>.work``."""
    progress: bool = True
    max_empty_fraction: Annotated[float, Bounds(0, 1)] = 0.5
    """Fail (nothing written but the report) when, in some language, more than this fraction of
    the queries got no negative at all: e.g. every candidate is a copy of the positive, or the
    margin removes everything. 1.0 accepts any result (items with fewer are still reported)."""
    teacher: Optional[str] = None
    """Also write ``teacher_scores`` of the positive and mined negatives: cross-encoder:<folder>,
    bi-encoder (the mining model) or bi-encoder:<folder> (``teacher.py``)."""
    teacher_block: Annotated[int, Bounds(1)] = 1024
    """Records scored together (one batched teacher call)."""


def validate_mining(config: MiningConfig) -> None:
    """The ranges on MiningConfig's fields, then the rules between fields."""
    def require(cond, name, message):
        if not cond:
            raise DataError(f"mining.{name}: {message}")

    validate_languages(config.languages)
    check_bounds(config, "mining.", DataError)
    require(config.range_min < config.range_max, "range_min",
            f"need 0 <= range_min < range_max, got {config.range_min}, {config.range_max}")
    require(config.num_negatives <= config.range_max - config.range_min, "num_negatives",
            f"{config.num_negatives} does not fit the window [{config.range_min}, "
            f"{config.range_max})")
    if config.absolute_margin is not None:
        require(np.isfinite(config.absolute_margin), "absolute_margin", "must be finite")
    require(config.sampling in ("random", "top"), "sampling",
            f"expected random or top, got {config.sampling!r}")
    require(config.search_depth is None or config.search_depth >= config.range_max,
            "search_depth", f"must be >= range_max ({config.range_max})")
    try:
        spec_of(config)
    except ValueError as err:
        raise DataError(f"mining.{err}") from None
    require(Path(config.output).suffix in (".jsonl", ".json", ".parquet"), "output",
            f"must end in .jsonl or .parquet, got {config.output}")
    if config.teacher is not None:
        parse_teacher(config.teacher)


def _digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _source_key(config: MiningConfig) -> str:
    stamp = []
    for source in [config.input, *config.corpus]:
        path = Path(source)
        stamp.append([source, path.stat().st_size, path.stat().st_mtime_ns] if path.is_file()
                     else [source, sorted((p.name, p.stat().st_size) for p in path.glob("*"))
                           if path.is_dir() else None])
    return _digest(stamp, config.languages, config.split)


def _corpus_passages(files: list[str], languages: list[str]) -> Iterator[tuple[str, str]]:
    for source in files:
        for where, record in raw_records(source):
            if isinstance(record, DataError):
                raise record
            lang, text = (record.get("lang"), record.get("text")) if isinstance(record, dict) \
                else (None, None)
            if lang not in languages or not isinstance(text, str) or not text.strip():
                raise DataError(f"{where}: corpus records need 'lang' (one of {languages}) and a "
                                f"non-empty 'text', got lang={lang!r}")
            yield lang, text


def spool(config: MiningConfig, folder: Path) -> dict:
    """Write pools, queries and item tables to disk once; return the spool's meta."""
    meta_path = folder / "meta.json"
    if meta_path.exists():
        return json.loads(meta_path.read_text())
    langs = config.languages
    pools = {l: TextStoreWriter(folder, f"pool.{l}") for l in langs}
    queries = {l: TextStoreWriter(folder, f"query.{l}") for l in langs}
    own, cids = array("q"), array("q")          # [items, L], flat: 8 bytes per entry
    report = ReadReport(config.input)
    for n, (_, item) in enumerate(tqdm(parsed_records(config.input, langs, split=config.split,
                                                      report=report),
                                       desc="reading records", unit=" items",
                                       disable=not config.progress)):
        row_pos, row_cid = [-1] * len(langs), [NO_ID] * len(langs)
        for j, lang in enumerate(langs):
            if lang in item.positive:
                row_pos[j] = pools[lang].add(item.positive[lang], n)
                row_cid[j] = pools[lang].last_id
                if lang in item.query:
                    queries[lang].add(item.query[lang], n)
        own.extend(row_pos)
        cids.extend(row_cid)
    for lang, text in _corpus_passages(config.corpus, langs):
        pools[lang].add(text, -1)
    for writer in (*pools.values(), *queries.values()):
        writer.close()
    np.save(folder / "own_position.npy", np.asarray(own, dtype=np.int64).reshape(-1, len(langs)))
    np.save(folder / "positive_ids.npy", np.asarray(cids, dtype=np.int64).reshape(-1, len(langs)))
    meta = {"num_items": len(own) // len(langs), "languages": langs, "read": report.summary()}
    meta_path.write_text(json.dumps(meta))
    return meta


class PoolEmbeddings:
    """One language's pool encoded in segments of ``shard_size`` (each its own cache entry)."""

    def __init__(self, encoder, pool: TextStore, cache: Path, config: MiningConfig, lang: str):
        self.segments = []
        self.dim = encoder.dim
        for start in range(0, len(pool), config.shard_size):
            size = min(config.shard_size, len(pool) - start)
            shards = encode_corpus(encoder, lambda i, s=start: pool[s + i], size, cache,
                                   shard_size=size, float16=config.float16,
                                   progress=config.progress)
            self.segments.append((start, shards))
        self.size = len(pool)

    def shards(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(embeddings, pool positions) one shard at a time (mmap)."""
        for start, shards in self.segments:
            for emb, positions in shards.shards():
                yield emb, positions + start

    def scores_of(self, queries: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """score(query_i, pool[positions_i]) for every row, one shard in memory at a time."""
        out = np.full(len(positions), np.nan, dtype=np.float32)
        for emb, shard_pos in self.shards():
            sorter = np.argsort(shard_pos)
            slot = np.clip(np.searchsorted(shard_pos[sorter], positions), 0, len(sorter) - 1)
            hit = np.flatnonzero(shard_pos[sorter[slot]] == positions)
            if len(hit):
                rows = np.asarray(emb[sorter[slot[hit]]], dtype=np.float32)
                out[hit] = np.einsum("ij,ij->i", queries[hit], rows)
        return out


def _save_part(path: Path, items: np.ndarray, selection: Selection, positive_scores: np.ndarray,
               searched: int) -> None:
    # The temporary ".<name>.tmp-<pid>" never matches the "<lang>.*.npz" parts; a file object,
    # so that numpy does not append ".npz" to it.
    with atomic.atomic_file(path) as tmp, open(tmp, "wb") as out:
        np.savez(out, items=items, positions=selection.positions, scores=selection.scores,
                 positive_scores=positive_scores, searched=searched, short=selection.short,
                 removed=json.dumps(selection.removed))


def mine_language(encoder, config: MiningConfig, spool_dir: Path, parts: Path, cache: Path,
                  lang_index: int) -> None:
    """Every query block of one language not yet in ``parts``."""
    lang = config.languages[lang_index]
    queries = TextStore(spool_dir, f"query.{lang}")
    blocks = range(0, len(queries), config.query_block)
    todo = [b for b in blocks if not (parts / f"{lang}.{b:010d}.npz").exists()]
    if not todo:
        return
    pool = TextStore(spool_dir, f"pool.{lang}")
    embeddings = PoolEmbeddings(encoder, pool, cache, config, lang)
    index = SearchIndex(spec_of(config), embeddings.shards, embeddings.dim, embeddings.size)
    own = np.load(spool_dir / "own_position.npy", mmap_mode="r")
    positive_ids = np.load(spool_dir / "positive_ids.npy", mmap_mode="r")
    depth = min(config.search_depth or config.range_max + 1, len(pool))
    spec = WindowSpec(**{k: getattr(config, k) for k in ("num_negatives", "range_min", "range_max",
                                                          "relative_margin", "absolute_margin",
                                                          "sampling", "seed")})
    for start in tqdm(todo, desc=f"mining {lang}", unit=" blocks", disable=not config.progress):
        stop = min(start + config.query_block, len(queries))
        items = np.asarray(queries.items[start:stop])
        vectors = encoder.encode_queries([queries[i] for i in range(start, stop)])
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        own_pos = np.asarray(own[items, lang_index])
        scores, positions = index.search(vectors, depth)
        positive_scores = embeddings.scores_of(vectors, own_pos)
        selection = select_negatives(positions, scores, pool.ids, own_pos,
                                     np.asarray(positive_ids[items]), lang_index,
                                     positive_scores, items, spec)
        _save_part(parts / f"{lang}.{start:010d}.npz", items, selection, positive_scores,
                   int((positions >= 0).sum()))


def _assemble(config: MiningConfig, parts: Path, num_items: int) -> tuple[dict, dict]:
    """Per language: [items, k] pool positions (a disk memmap) and the report's raw numbers."""
    negatives, stats = {}, {}
    k = config.num_negatives
    for lang in config.languages:
        table = np.lib.format.open_memmap(parts / f"negatives.{lang}.npy", mode="w+",
                                          dtype=np.int64, shape=(num_items, k))
        table[:] = -1
        entry = {"queries": 0, "searched": 0, "short": 0, "empty": 0, "removed": {},
                 "positive_scores": [], "negative_scores": []}
        for path in sorted(parts.glob(f"{lang}.*.npz")):
            with np.load(path) as part:
                table[part["items"]] = part["positions"]
                entry["queries"] += len(part["items"])
                entry["searched"] += int(part["searched"])
                entry["short"] += int(part["short"])
                entry["empty"] += int(((part["positions"] >= 0).sum(axis=1) == 0).sum())
                for name, count in json.loads(str(part["removed"])).items():
                    entry["removed"][name] = entry["removed"].get(name, 0) + count
                entry["positive_scores"].append(part["positive_scores"])
                kept = part["scores"]
                entry["negative_scores"].append(kept[np.isfinite(kept)])
        table.flush()
        negatives[lang] = table
        stats[lang] = entry
    return negatives, stats


def write_output(config: MiningConfig, spool_dir: Path, negatives: dict, teacher=None) -> int:
    """Write the records with their mined negatives (and, with a teacher, their scores, computed
    for ``teacher_block`` records at a time)."""
    pools = {l: TextStore(spool_dir, f"pool.{l}") for l in config.languages}
    writer = RecordWriter(config.output, config.languages, teacher_scores=teacher is not None)
    count, block = 0, []

    def flush():
        scores = score_records(teacher, [item for _, item, _ in block],
                               [mined for _, _, mined in block]) if teacher else [None] * len(block)
        for (record, item, mined), teacher_scores in zip(block, scores):
            writer.write(with_negatives(record, item, mined, teacher_scores))
        block.clear()

    for n, (record, item) in enumerate(tqdm(parsed_records(config.input, config.languages,
                                                           split=config.split),
                                            desc="writing", unit=" items",
                                            disable=not config.progress)):
        mined = {l: [pools[l][int(p)] for p in negatives[l][n] if p >= 0]
                 for l in config.languages if l in item.languages}
        block.append((record, item, mined))
        if len(block) >= config.teacher_block:
            flush()
        count += 1
    flush()
    writer.close()
    return count


def make_encoder(config: MiningConfig, model: Optional[str] = None):
    from megatron_hybridir.evaluation.encoder import Encoder

    return Encoder(EncoderConfig(model=model or config.model, batch_size=config.batch_size,
                                 query_prompt=config.query_prompt,
                                 passage_prompt=config.passage_prompt,
                                 max_length=config.max_length, normalize=config.normalize))


def mine(config: MiningConfig, encoder=None) -> dict:
    """Mine, write ``config.output`` and ``<output>.report.json`` (+ a plot); return the report.

    ``encoder``: anything with ``encode_queries``, ``encode_passages_in_order``, ``token_lengths``,
    ``fingerprint``, ``dim`` and ``passage_prompt`` (default: the evaluation encoder on
    ``config.model``).
    """
    from megatron_hybridir.mining.report import build_report

    validate_mining(config)
    work = Path(config.work_dir or config.output + ".work")
    fresh_work = not work.exists()
    work.mkdir(parents=True, exist_ok=True)
    source_key = _source_key(config)
    spool_dir = work / f"spool-{source_key}"
    meta = spool(config, spool_dir)
    if not any(len(TextStore(spool_dir, f"query.{l}")) for l in config.languages):
        # Nothing of this call is worth keeping: a spool of nothing would only be found again.
        shutil.rmtree(work if fresh_work else spool_dir, ignore_errors=True)
        raise DataError(f"mining {config.input}: no item has a query and a positive in any of "
                        f"{config.languages} ({meta['num_items']} items read); nothing to mine")
    encoder = encoder if encoder is not None else make_encoder(config)
    selection = {k: v for k, v in asdict(config).items()
                 if k not in ("output", "work_dir", "progress", "shard_size", "max_empty_fraction",
                              "teacher", "teacher_block")}
    parts = work / f"parts-{_digest(source_key, encoder.fingerprint(), selection)}"
    parts.mkdir(exist_ok=True)
    for lang_index in range(len(config.languages)):
        mine_language(encoder, config, spool_dir, parts, work / "cache", lang_index)
    negatives, stats = _assemble(config, parts, meta["num_items"])
    failing = check_shortfall(config, stats)
    if failing:
        build_report(config, stats, 0, Path(config.output), echo=False)
        raise DataError(f"mining {config.input}: no negative for most queries of "
                        f"{'; '.join(failing)}. Nothing written to {config.output} (see "
                        f"{config.output}.report.json); loosen the filters (margin, --range) or "
                        f"add passages (--corpus), or accept it with --max-empty-fraction 1")
    teacher = None
    if config.teacher is not None:
        teacher = make_teacher(config.teacher, mining_encoder=lambda: encoder,
                               encoder_for=lambda folder: make_encoder(config, model=folder),
                               batch_size=config.batch_size, max_length=config.max_length)
    written = write_output(config, spool_dir, negatives, teacher=teacher)
    report = build_report(config, stats, written, Path(config.output))
    return report


def check_shortfall(config: MiningConfig, stats: dict) -> list[str]:
    """Log every language whose queries got fewer negatives than asked (always, not only with
    progress on); return those past ``max_empty_fraction`` of queries with none (why included)."""
    k, failing = config.num_negatives, []
    for lang, entry in stats.items():
        queries, empty = entry["queries"], entry["empty"]
        if entry["short"]:
            log.warning("mining %s: %d of %d queries got fewer than %d negatives, %d of them none",
                        lang, entry["short"], queries, k, empty)
        if queries and empty / queries > config.max_empty_fraction:
            removed = ", ".join(f"{name} {n}" for name, n in entry["removed"].items() if n)
            failing.append(f"{lang} ({empty} of {queries} queries > max_empty_fraction "
                           f"{config.max_empty_fraction:g}; {entry['searched']} candidates "
                           f"searched, removed: {removed or 'none'})")
    return failing
