"""Encoding queries and corpora with any Hugging Face or sentence-transformers folder.

Why it exists: evaluation must run on our exports and on third-party models alike, and a 21M-passage
corpus does not fit in RAM as float32. :class:`Encoder` wraps ``SentenceTransformer`` (a plain HF
folder gets mean pooling), applies query / passage prompts (from the model's own
``config_sentence_transformers.json`` unless given), uses fp16/bf16 on GPU and several GPUs through
sentence-transformers' process pool. :func:`encode_corpus` sorts passages by *token* count once and
feeds the model batches in that order (sentence-transformers sorts by characters, which pads ~9% more
tokens even on English text and far more across scripts), streams embeddings into ``.npy`` shards
on disk (optionally float16), and reuses them when the cache key — model fingerprint (a hash of
every byte of the model folder), corpus hash, prompt, length, dtype — matches; a shard set is only valid once its ``meta.json`` exists, so an
interrupted run never leaves a half cache.

What it does not do: search (``search.py``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Callable, Iterator, Optional, Sequence

import numpy as np
from tqdm import tqdm

from megatron_hybridir import atomic
from megatron_hybridir.config.ranges import COUNT, OPTIONAL_COUNT

log = logging.getLogger(__name__)
_FLOAT16_MAX = float(np.finfo(np.float16).max)


class EmbeddingError(ValueError):
    """Embeddings that cannot be scored: non-finite values from the model, or a damaged cache."""


def check_finite(emb: np.ndarray, *, model: str, kind: str,
                 indices: Optional[Sequence[int]] = None) -> np.ndarray:
    """``emb`` [n, d] unchanged if every value is finite; else an :class:`EmbeddingError` naming
    the model, the index of the first bad text (``indices[row]`` when given: corpus positions) and
    how many rows are bad."""
    bad = ~np.isfinite(emb).all(axis=1) if emb.size else np.zeros(len(emb), bool)
    if bad.any():
        rows = np.flatnonzero(bad)
        first = int(indices[rows[0]]) if indices is not None else int(rows[0])
        raise EmbeddingError(
            f"encoder.model {model}: {len(rows)} of {len(emb)} {kind} embeddings in this batch are "
            f"not finite (NaN or inf), first at {kind} index {first}; the model's output overflowed "
            f"(try encoder.dtype=float32) or its weights hold NaN/inf")
    return emb


@dataclass
class EncoderConfig:
    model: str = ""
    """HF or sentence-transformers folder (or hub name with a network)"""
    batch_size: Annotated[int, COUNT] = 64
    dtype: str = "auto"
    """auto: bf16 on GPUs that have it (else fp16), fp32 on CPU."""
    devices: Optional[list[str]] = None
    """For example ["cuda:0", "cuda:1"]; default: one GPU if any, else CPU."""
    query_prompt: Optional[str] = None
    """Default: the model's "query" prompt, if it has one."""
    passage_prompt: Optional[str] = None
    max_length: Annotated[Optional[int], OPTIONAL_COUNT] = None
    normalize: bool = False
    """Our exports normalise inside the model already."""
    truncate_dim: Annotated[Optional[list[int]], OPTIONAL_COUNT] = None
    """Matryoshka: also report metrics for these prefixes (the corpus is encoded once;
    evaluation/matryoshka.py)"""


class Encoder:
    def __init__(self, config: EncoderConfig):
        import torch
        from sentence_transformers import SentenceTransformer

        self.config = config
        devices = config.devices or (["cuda:0"] if torch.cuda.is_available() else ["cpu"])
        self.devices = devices
        self.model = SentenceTransformer(config.model, device=devices[0], local_files_only=
                                         os.environ.get("HF_HUB_OFFLINE") == "1")
        dtype = config.dtype
        if dtype == "auto" and devices[0].startswith("cuda"):
            # The LLM retrievers are trained in bf16; some (Qwen) overflow fp16's range.
            dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        elif dtype == "auto":
            dtype = "float32"
        if dtype != "float32":
            self.model.to(getattr(torch, dtype))
        self.dtype = dtype
        if config.max_length:
            self.model.max_seq_length = config.max_length
        prompts = self.model.prompts or {}
        self.query_prompt = config.query_prompt if config.query_prompt is not None else prompts.get("query", "")
        self.passage_prompt = (config.passage_prompt if config.passage_prompt is not None
                               else prompts.get("document") or prompts.get("passage") or "")
        self._pool = None
        if len(devices) > 1:
            self._pool = self.model.start_multi_process_pool(target_devices=devices)

    def close(self) -> None:
        if self._pool is not None:
            self.model.stop_multi_process_pool(self._pool)
            self._pool = None

    @property
    def dim(self) -> int:
        model = self.model   # sentence-transformers >= 6 renamed the method
        return (getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension)()

    def fingerprint(self, hash_cache: Optional[Path] = None) -> str:
        """Identifies the model by the content of every file of its folder (all weights in full,
        see :func:`folder_fingerprint`) plus the encoding settings."""
        digest = hashlib.sha256()
        root = Path(self.config.model)
        if root.is_dir():
            digest.update(folder_fingerprint(root, hash_cache=hash_cache).encode())
        else:
            digest.update(self.config.model.encode())
        digest.update(f"{self.dtype}|{self.model.max_seq_length}|{self.config.normalize}".encode())
        return digest.hexdigest()[:16]

    def _encode(self, texts: Sequence[str], prompt: str, progress: bool, kind: str,
                indices: Optional[Sequence[int]] = None) -> np.ndarray:
        out = self.model.encode(list(texts), prompt=prompt or None, batch_size=self.config.batch_size,
                                show_progress_bar=progress, convert_to_numpy=True,
                                normalize_embeddings=self.config.normalize, pool=self._pool)
        return check_finite(np.asarray(out, dtype=np.float32), model=self.config.model, kind=kind,
                            indices=indices)

    def token_lengths(self, texts: Sequence[str]) -> np.ndarray:
        """Tokens per text as the model will see it (special tokens in, truncated to its limit);
        characters for models without a text tokenizer."""
        tokenizer = getattr(self.model, "tokenizer", None)
        if tokenizer is None:
            return np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
        ids = tokenizer(list(texts), add_special_tokens=True, return_attention_mask=False,
                        return_token_type_ids=False)["input_ids"]
        out = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        return np.minimum(out, self.model.max_seq_length or np.iinfo(np.int64).max)

    def encode_passages_in_order(self, texts: Sequence[str], on_batch: Callable[[int], None] = None,
                                 positions: Optional[Sequence[int]] = None) -> np.ndarray:
        """Encode in batches of consecutive texts (the caller's order). One device: one ``encode``
        call per batch, so sentence-transformers' own character-length re-sort cannot regroup them;
        several devices: the process pool takes the whole list. ``positions``: the texts' corpus
        positions, named by a non-finite-embedding error."""
        if self._pool is not None:
            out = self.encode_passages(texts, positions=positions)
            if on_batch:
                on_batch(len(texts))
            return out
        step = self.config.batch_size
        parts = []
        for start in range(0, len(texts), step):
            parts.append(self.encode_passages(
                texts[start:start + step],
                positions=None if positions is None else positions[start:start + step]))
            if on_batch:
                on_batch(len(parts[-1]))
        return np.concatenate(parts) if parts else np.zeros((0, self.dim), np.float32)

    def encode_queries(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        return self._encode(texts, self.query_prompt, progress, "query")

    def encode_passages(self, texts: Sequence[str], progress: bool = False,
                        positions: Optional[Sequence[int]] = None) -> np.ndarray:
        return self._encode(texts, self.passage_prompt, progress, "passage", positions)


_RACY_NS = 2_000_000_000   # files changed this recently are hashed again next time


def _file_sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def folder_fingerprint(root: Path, *, hash_cache: Optional[Path] = None) -> str:
    """Sha256 over (relative path, sha256 of the content) of every file under ``root``.

    Every byte counts: a model whose middle layers changed must not reuse another model's corpus
    embeddings. Hashing tens of GB at each evaluation would be slow, so each file's content hash is
    remembered in ``hash_cache`` (a JSON sidecar) under its path, size, inode, mtime_ns and
    ctime_ns; any write changes ctime (which no user call can set back), so a changed file is
    always hashed again. The content hash, never the stat, is what enters the fingerprint. As in
    git's "racy" check, a file changed within the last seconds is not remembered: timestamps are
    coarse (a clock tick), and a second write in the same tick would keep the same stat.
    """
    known = {}
    if hash_cache is not None and hash_cache.exists():
        try:
            known = json.loads(hash_cache.read_text())
        except json.JSONDecodeError:
            known = {}   # a damaged sidecar only costs re-hashing
    digest, changed = hashlib.sha256(), False
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        st = path.stat()
        key = f"{path.resolve()}|{st.st_size}|{st.st_ino}|{st.st_mtime_ns}|{st.st_ctime_ns}"
        content = known.get(key)
        if content is None:
            content = _file_sha256(path)
            if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > _RACY_NS:
                known[key], changed = content, True
        digest.update(str(path.relative_to(root)).encode() + b"\0" + content.encode() + b"\0")
    if hash_cache is not None and changed:
        hash_cache.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_text(hash_cache, json.dumps(known))
    return digest.hexdigest()


@dataclass
class CorpusShards:
    """Embeddings on disk: shard k holds rows for corpus positions ``order[k]`` (length-sorted)."""

    folder: Path
    shard_files: list[Path]
    index_files: list[Path]
    dim: int
    size: int

    def shards(self) -> "Iterator[tuple[np.ndarray, np.ndarray]]":
        for path, idx in zip(self.shard_files, self.index_files):
            emb = np.load(path, mmap_mode="r")
            for start in range(0, len(emb), _CHECK_ROWS):     # bounded memory on huge shards
                block = emb[start:start + _CHECK_ROWS]
                bad = ~np.isfinite(block).all(axis=1)
                if bad.any():
                    raise EmbeddingError(
                        f"{path}: {int(bad.sum())} cached embedding row(s) from row "
                        f"{start + int(np.flatnonzero(bad)[0])} are not finite (NaN or inf); the "
                        f"cache is damaged: delete {self.folder} to encode the corpus again")
            yield emb, np.load(idx)

    @classmethod
    def open(cls, folder: Path) -> Optional["CorpusShards"]:
        """The shard set in ``folder``; None when there is none or when its files do not match its
        ``meta.json`` (a damaged cache is encoded again, with a warning)."""
        meta_path = folder / "meta.json"
        if not meta_path.exists():
            return None
        try:
            meta = json.loads(meta_path.read_text())
            shards = cls(folder, [folder / f for f in meta["shards"]],
                         [folder / f for f in meta["indices"]], int(meta["dim"]), int(meta["size"]))
            shards._check_layout()
        except (OSError, ValueError, KeyError, TypeError, EOFError) as err:
            log.warning("cached corpus embeddings in %s are damaged (%s); encoding again", folder, err)
            return None
        return shards

    def _check_layout(self) -> None:
        """Each shard's shape matches its positions and ``dim``; the positions cover 0..size-1
        exactly once (``np.load`` reads only the shard headers)."""
        if len(self.shard_files) != len(self.index_files):
            raise ValueError(f"{len(self.shard_files)} shards but {len(self.index_files)} indices")
        seen = np.zeros(self.size, dtype=bool)
        for path, idx in zip(self.shard_files, self.index_files):
            emb, positions = np.load(path, mmap_mode="r"), np.load(idx)
            if emb.ndim != 2 or emb.shape != (len(positions), self.dim):
                raise ValueError(f"{path.name}: shape {emb.shape}, expected ({len(positions)}, "
                                 f"{self.dim})")
            if len(positions) and (positions.min() < 0 or positions.max() >= self.size
                                   or seen[positions].any()):
                raise ValueError(f"{idx.name}: positions out of range or repeated")
            seen[positions] = True
        if not seen.all():
            raise ValueError(f"{int((~seen).sum())} of {self.size} corpus positions have no row")


def corpus_hash(passages: Callable[[int], str], size: int) -> str:
    digest = hashlib.sha256(str(size).encode())
    for i in range(size):
        digest.update(passages(i).encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def write_shards(folder: Path, chunks, dim: int, size: int, float16: bool) -> CorpusShards:
    """Write (embeddings, positions) chunks as shards into ``folder`` via a temporary folder."""
    shards, indices = [], []
    with atomic.atomic_folder(folder) as tmp:       # a cache entry is only ever complete
        for k, (emb, positions) in enumerate(chunks):
            name, iname = f"emb_{k:05d}.npy", f"pos_{k:05d}.npy"
            if float16 and emb.size and np.abs(emb).max() > _FLOAT16_MAX:
                raise EmbeddingError(
                    f"float16_shards: embeddings reach {np.abs(emb).max():.4g}, beyond float16's "
                    f"range (+-{_FLOAT16_MAX:.0f}), so the stored shard would hold inf; set "
                    f"float16_shards=false or encoder.normalize=true")
            np.save(tmp / name, emb.astype(np.float16 if float16 else np.float32))
            np.save(tmp / iname, np.asarray(positions, dtype=np.int64))
            shards.append(name)
            indices.append(iname)
        (tmp / "meta.json").write_text(json.dumps({"shards": shards, "indices": indices,
                                                   "dim": dim, "size": size, "float16": float16}))
    return CorpusShards.open(folder)


_LENGTH_CHUNK = 10_000   # passages tokenized at once when sorting by length
_CHECK_ROWS = 262_144    # cached rows checked for finiteness at once


def encode_corpus(encoder: Encoder, passages: Callable[[int], str], size: int, cache_dir: Path,
                  shard_size: int = 100_000, float16: bool = False,
                  progress: bool = True) -> CorpusShards:
    """Encode ``size`` passages into disk shards, or reuse a cached encoding of the same inputs."""
    fingerprint = encoder.fingerprint(hash_cache=Path(cache_dir) / "file_hashes.json")
    key = hashlib.sha256(f"{fingerprint}|{corpus_hash(passages, size)}|"
                         f"{encoder.passage_prompt}|{float16}|{shard_size}".encode()).hexdigest()[:20]
    folder = Path(cache_dir) / key
    cached = CorpusShards.open(folder)
    if cached is not None:
        log.info("reusing cached corpus embeddings in %s", folder)
        return cached
    lengths = np.empty(size, dtype=np.int64)
    for start in range(0, size, _LENGTH_CHUNK):       # the corpus is not held in memory
        stop = min(start + _LENGTH_CHUNK, size)
        lengths[start:stop] = encoder.token_lengths([passages(i) for i in range(start, stop)])
    order = np.argsort(-lengths, kind="stable")      # longest first, as BEIR does: OOM shows at once
    bar = tqdm(total=size, desc="encode corpus", unit="psg", disable=not progress)

    def chunks():
        for start in range(0, size, shard_size):
            positions = order[start:start + shard_size]
            emb = encoder.encode_passages_in_order([passages(int(i)) for i in positions], bar.update,
                                                   positions=positions)
            yield emb, positions

    shards = write_shards(folder, chunks(), encoder.dim, size, float16)
    bar.close()
    return shards
