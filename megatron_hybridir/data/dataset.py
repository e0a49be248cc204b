"""Read a preprocessed folder: token rows for (item, field, language), the sampler, the collator.

Why it exists: it joins the pure sampler (item ids and languages per step) to the tokens on disk
(mmap, so nothing is loaded up front) and to the model's batch layout (``data/batch.Batch``:
rows ``[queries, positives, negatives]``, right padded, boolean mask).

What it does not do: decide which items or languages a step uses (``sampler.py``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from megatron_hybridir.data.batch import Batch
from megatron_hybridir.data.sampler import GlobalBatch, HybridSampler, SamplerConfig
from megatron_hybridir.data.staging import check_file_sizes


class TokenizedDataset:
    """The folder written by ``preprocess``; token rows are read lazily through mmap."""

    def __init__(self, path: str):
        from megatron.core.datasets.indexed_dataset import IndexedDataset

        self.path = Path(path)
        manifest_path = self.path / "manifest.json"
        if not manifest_path.exists():
            raise FileNotFoundError(f"{path}: no manifest.json (run tools/preprocess_data.py)")
        self.manifest = json.loads(manifest_path.read_text())
        self.languages: list[str] = self.manifest["config"]["languages"]
        self.pad_id: int = self.manifest["pad_id"]
        if "files" in self.manifest:   # folders written before sizes were recorded lack it
            check_file_sizes(self.path, self.manifest["files"], manifest=str(manifest_path))
        counts = self.manifest["counts"]
        self._data = {}
        for fieldname in ("query", "positive", "negative"):
            for lang in self.languages:
                # No rows (plain pairs have no negatives): no file to open, nothing to read.
                if counts.get(f"{fieldname}.{lang}", 1):
                    prefix = str(self.path / f"{fieldname}.{lang}")
                    self._data[(fieldname, lang)] = IndexedDataset(prefix, mmap=True)
        self._rows = {(f, l): np.load(self.path / f"{f}.{l}.row.npy", mmap_mode="r")
                      for f in ("query", "positive") for l in self.languages}
        self._neg_start = {l: np.load(self.path / f"negative.{l}.start.npy", mmap_mode="r")
                           for l in self.languages}
        langs = np.load(self.path / "items.langs.npy")
        count = np.bitwise_count(langs) if hasattr(np, "bitwise_count") else np.array(
            [bin(int(m)).count("1") for m in langs])
        # Sampler streams: items with >= 2 languages can be cross-lingual; the rest are mono.
        self.parallel_ids = np.flatnonzero(count >= 2)
        self.mono_ids = np.flatnonzero(count == 1)
        self.parallel_masks = langs[self.parallel_ids]
        self.mono_langs = np.log2(langs[self.mono_ids].astype(np.float64)).astype(np.int16)
        self.sources = np.load(self.path / "items.source.npy")
        self._check_counts(langs)
        # Content ids per passage row (false-negative masking); absent in folders written before.
        cid_files = {(f, l): self.path / f"{f}.{l}.cid.npy"
                     for f in ("positive", "negative") for l in self.languages}
        self._cids = ({key: np.load(p, mmap_mode="r") for key, p in cid_files.items()}
                      if all(p.exists() for p in cid_files.values()) else None)
        self._teacher = self._load_teacher_scores()

    def _load_teacher_scores(self) -> Optional[dict]:
        """Teacher scores per passage row when every item has them (distillation), else None."""
        if self.teacher_items != self.num_items or self.num_items == 0:
            return None
        out = {}
        for fieldname in ("positive", "negative"):
            for lang in self.languages:
                path = self.path / f"{fieldname}.{lang}.teacher.npy"
                out[(fieldname, lang)] = np.load(path, mmap_mode="r")
                rows = self.manifest["counts"][f"{fieldname}.{lang}"]
                if len(out[(fieldname, lang)]) != rows:
                    raise ValueError(f"{path}: {len(out[(fieldname, lang)])} scores, "
                                     f"{self.path / 'manifest.json'} counts {rows} rows")
        return out

    @property
    def teacher_items(self) -> int:
        """Items with teacher scores (the manifest's count; 0 in folders written before)."""
        return int(self.manifest.get("teacher_scores", {}).get("items", 0))

    @property
    def has_teacher_scores(self) -> bool:
        return self._teacher is not None

    def teacher_scores(self, item: int, lang: int) -> list[float]:
        """The teacher's scores of the item's positive and negatives in ``lang``."""
        code = self.languages[lang]
        pos = float(self._teacher[("positive", code)][int(self._rows[("positive", code)][item])])
        start, end = self._neg_start[code][item], self._neg_start[code][item + 1]
        return [pos] + [float(x) for x in self._teacher[("negative", code)][int(start):int(end)]]

    def _check_counts(self, langs: np.ndarray) -> None:
        """Every array and token file agrees with the manifest's item and row counts."""
        items, where = self.num_items, self.path / "manifest.json"
        arrays = {"items.langs.npy": len(langs), "items.source.npy": len(self.sources)}
        arrays.update({f"{f}.{l}.row.npy": len(rows) for (f, l), rows in self._rows.items()})
        for name, length in arrays.items():
            if length != items:
                raise ValueError(f"{self.path / name}: {length} entries, {where} says "
                                 f"num_items={items}")
        for lang, starts in self._neg_start.items():
            if len(starts) != items + 1 or int(starts[-1]) != self.manifest["counts"][f"negative.{lang}"]:
                raise ValueError(f"{self.path / f'negative.{lang}.start.npy'}: does not match "
                                 f"{where} (num_items={items}, counts)")
        for (fieldname, lang), data in self._data.items():
            expected = self.manifest["counts"][f"{fieldname}.{lang}"]
            if len(data) != expected:
                raise ValueError(f"{self.path / f'{fieldname}.{lang}.idx'}: {len(data)} rows, "
                                 f"{where} says {expected}")

    def sampler(self, config: SamplerConfig) -> HybridSampler:
        return HybridSampler(config, num_languages=len(self.languages),
                             parallel_masks=self.parallel_masks, mono_langs=self.mono_langs,
                             parallel_sources=self.sources[self.parallel_ids],
                             mono_sources=self.sources[self.mono_ids])

    def disk_id(self, sampler_item: int) -> int:
        n = len(self.parallel_ids)
        return int(self.parallel_ids[sampler_item] if sampler_item < n
                   else self.mono_ids[sampler_item - n])

    @property
    def num_items(self) -> int:
        return int(self.manifest["num_items"])

    def has(self, fieldname: str, item: int, code: str) -> bool:
        return int(self._rows[(fieldname, code)][item]) >= 0

    def tokens(self, fieldname: str, item: int, lang: int) -> np.ndarray:
        code = self.languages[lang]
        row = int(self._rows[(fieldname, code)][item])
        if row < 0:
            raise KeyError(f"item {item} has no {fieldname} in {code}")
        return self._data[(fieldname, code)][row]

    @property
    def has_content_ids(self) -> bool:
        return self._cids is not None

    def content_id(self, item: int, lang: int) -> int:
        """Content id of the item's positive in ``lang``."""
        code = self.languages[lang]
        return int(self._cids[("positive", code)][int(self._rows[("positive", code)][item])])

    def negative_content_ids(self, item: int, lang: int) -> list[int]:
        code = self.languages[lang]
        start, end = self._neg_start[code][item], self._neg_start[code][item + 1]
        return [int(c) for c in self._cids[("negative", code)][int(start):int(end)]]

    def negatives(self, item: int, lang: int) -> list[np.ndarray]:
        code = self.languages[lang]
        start, end = self._neg_start[code][item], self._neg_start[code][item + 1]
        return [self._data[("negative", code)][int(r)] for r in range(start, end)]


class Collator:
    """Micro-batch of sampler picks -> the engine's token batch (``Batch``, with the sampler's kind).

    Hard negatives are taken in the passage's language; an item with fewer than k negatives in
    that language is filled with positives of other items of the batch in that language
    (deterministic), counted in ``filled_negatives``. With content ids in the folder the batch
    carries ``positive_ids`` [b] and ``negative_ids`` [b*k] for false-negative masking.
    """

    def __init__(self, dataset: TokenizedDataset, *, num_negatives: int,
                 pad_to_multiple: int = 8, fixed_length: Optional[int] = None):
        self.dataset = dataset
        self.k = num_negatives
        self.multiple = pad_to_multiple
        self.fixed_length = fixed_length
        self.filled_negatives = 0

    def __call__(self, micro: GlobalBatch) -> Batch:
        ds = self.dataset
        ids = [ds.disk_id(int(i)) for i in micro.items]
        queries = [ds.tokens("query", i, int(q)) for i, q in zip(ids, micro.query_lang)]
        positives = [ds.tokens("positive", i, int(p)) for i, p in zip(ids, micro.passage_lang)]
        negatives, negative_ids = [], []
        for n, (i, p) in enumerate(zip(ids, micro.passage_lang)):
            own = ds.negatives(i, int(p))[: self.k]
            if ds.has_content_ids:
                negative_ids += ds.negative_content_ids(i, int(p))[: self.k]
            if len(own) < self.k:
                own += self._fillers(ids, n, int(p), self.k - len(own), negative_ids)
            negatives.extend(own)
        seqs = queries + positives + negatives
        input_ids, mask = self.pad(seqs)
        content = {}
        if ds.has_content_ids:
            content = {"positive_ids": torch.tensor(
                [ds.content_id(i, int(p)) for i, p in zip(ids, micro.passage_lang)], dtype=torch.long),
                "negative_ids": torch.tensor(negative_ids, dtype=torch.long)}
        if ds.has_teacher_scores:
            content["teacher_scores"] = self._teacher_scores(ids, micro.passage_lang)
        return Batch(input_ids=input_ids, attention_mask=mask, num_queries=len(ids),
                     num_negatives=self.k, kind=micro.kind,
                     segment_lengths=self._segment_lengths(seqs, len(ids)), **content)

    def _teacher_scores(self, ids: list[int], passage_lang) -> torch.Tensor:
        """[b, 1 + k] float32: each pair's positive and its own first k negatives in the passage
        language; NaN for negatives filled in from other items (the teacher never scored them)."""
        out = torch.full((len(ids), 1 + self.k), float("nan"), dtype=torch.float32)
        for n, (i, p) in enumerate(zip(ids, passage_lang)):
            scores = self.dataset.teacher_scores(i, int(p))[: 1 + self.k]
            out[n, : len(scores)] = torch.tensor(scores, dtype=torch.float32)
        return out

    def _fillers(self, ids: list[int], n: int, lang: int, count: int,
                 filler_ids: Optional[list] = None) -> list[np.ndarray]:
        """Positives of other items in ``lang``, searched from the next pair of the batch on.

        NOTE: another item's positive is a valid negative because each item appears once per
        batch; it must be in the pair's passage language, or the negative would be trivially easy.
        """
        ds, out = self.dataset, []
        code = ds.languages[lang]
        candidates = [ids[(n + d) % len(ids)] for d in range(1, len(ids))]
        for item in candidates + list(range(ds.num_items)):
            if len(out) == count:
                break
            if item != ids[n] and ds.has("positive", item, code):
                out.append(ds.tokens("positive", item, lang))
                if ds.has_content_ids and filler_ids is not None:
                    filler_ids.append(ds.content_id(item, lang))
        if len(out) < count:
            raise ValueError(f"no passages in language {code} to use as negatives")
        self.filled_negatives += count
        return out

    def pad(self, seqs: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids and mask [rows, S] of right-padded rows (S: the fixed length, or the longest
        row rounded up to the multiple)."""
        longest = max(len(s) for s in seqs)
        if self.fixed_length is not None:
            if longest > self.fixed_length:
                raise ValueError(f"sequence of {longest} tokens exceeds fixed length "
                                 f"{self.fixed_length}")
            longest = self.fixed_length
        else:
            longest = -(-longest // self.multiple) * self.multiple
        input_ids = torch.full((len(seqs), longest), self.dataset.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), longest), dtype=torch.bool)
        for row, seq in enumerate(seqs):
            input_ids[row, : len(seq)] = torch.from_numpy(np.asarray(seq, dtype=np.int64))
            mask[row, : len(seq)] = True
        return input_ids, mask

    def _segment_lengths(self, seqs: list[np.ndarray], num_queries: int) -> Optional[tuple]:
        """Each segment's own padded width (queries, positives, negatives), or None at a fixed
        length: see training.forward_step.embed, which runs them as separate forward passes."""
        if self.fixed_length is not None:
            return None
        bounds = [0, num_queries, 2 * num_queries, len(seqs)]
        return tuple(-(-max((len(s) for s in seqs[a:b]), default=0) // self.multiple) * self.multiple
                     for a, b in zip(bounds, bounds[1:]))
