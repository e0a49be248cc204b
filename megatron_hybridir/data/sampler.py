"""The hybrid batch sampler: which items, in which languages, at every training step.

Why it exists: hybrid batch training *is* this decision. Each global batch is monolingual (every
pair's query and passage in the same language) with probability alpha, cross-lingual (query and
passage languages differ) otherwise. Everything here is a pure function of (seed, step, dp_rank,
dp_size): every rank computes the same global batch independently and takes its own slice, so no
communication is needed and resuming from a consumed-samples count reproduces the batches exactly.

Design:
- Items live in two streams. ``parallel`` items have a query and positive in >= 2 languages and can
  fill both batch types; ``mono`` items (monolingual-only sources) can only fill monolingual
  batches, taking a share of each monolingual batch proportional to their count.
- A stream is read in epochs; each epoch is a permutation seeded by (seed, stream, epoch). Stream
  positions at a step follow from the batch types of all earlier steps, which are themselves a pure
  function of the seed (computed vectorised and cached).
- An item appears at most once per global batch; where an epoch boundary would repeat one, the
  repeat is replaced deterministically by an unused item.
- ``same_source_batches``: every batch's items come from one source (``source_batches.py``),
  drawn after the batch kind among the sources that can fill it.
- Languages: per batch (default, the paper's rule: one language for a whole monolingual batch,
  drawn uniformly or temperature-weighted) or per example; a cross-lingual pair draws (a, b), a != b,
  from the item's own languages. Items missing the batch language fall back to one of their own
  languages; the count is reported in ``GlobalBatch.fallbacks``.

What it does not do: import torch or torch.distributed, read tokens, or hold a trainer.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal, Optional, Sequence, get_args

import numpy as np

from megatron_hybridir.data.batch_kind import BatchKind
from megatron_hybridir.data.seeding import keyed_rng

SamplerMode = Literal["monolingual", "cross-lingual", "hybrid", "mixed"]
LanguageChoice = Literal["batch", "example"]
MODES: tuple[str, ...] = get_args(SamplerMode)
_STREAM_PARALLEL, _STREAM_MONO = 0, 1


@dataclass(frozen=True)
class SamplerConfig:
    """The sampler's settings (``DataConfig.sampler_config`` derives them from a run's config);
    checked on construction by ``check_settings``."""

    mode: SamplerMode = "hybrid"
    """monolingual (alpha=1), cross-lingual (alpha=0), hybrid (alpha), or mixed (independent langs)."""
    alpha: float = 0.5
    """Probability that a global batch is monolingual in hybrid mode."""
    language_choice: LanguageChoice = "batch"
    """``batch``: one language per monolingual batch (paper default); ``example``: per pair."""
    language_temperature: float = 0.0
    """0 (default, the paper's rule): languages uniform. T > 0: weights proportional to
    pairs_per_language**(1/T) (T=1 follows the data; larger T flattens towards uniform)."""
    global_batch_size: int = 100
    seed: int = 1234
    source_weights: Optional[tuple] = None
    """Relative share of each source per epoch (None: proportional to size, the paper's rule).
    A source given more than its size repeats items across the epoch, never within a batch; a
    source of weight 0 is never drawn (nor counted in the language weights). With
    ``same_source_batches``: each source's share of the batches instead."""
    same_source_batches: bool = False
    """Draw every global batch from one source (``data/source_batches.py``); off: sources mix."""

    def __post_init__(self):
        check_settings(self, where="sampler")


def check_settings(settings: Any, *, where: str) -> None:
    """The rules of the sampler's settings, written once: for a ``SamplerConfig`` (``where`` =
    ``sampler``) and for a run's ``DataConfig`` at load time (``where`` = ``data``, which has the
    same field names). Raises ValueError naming ``where.field``."""
    if settings.mode not in MODES:
        raise ValueError(f"{where}.mode: unknown mode {settings.mode!r}; expected {list(MODES)}")
    if settings.language_choice not in get_args(LanguageChoice):
        raise ValueError(f"{where}.language_choice: expected batch or example, got "
                         f"{settings.language_choice!r}")
    if not 0.0 <= settings.alpha <= 1.0:
        raise ValueError(f"{where}.alpha: must lie in [0, 1], got {settings.alpha}")
    if not settings.language_temperature >= 0:
        raise ValueError(f"{where}.language_temperature: must be >= 0, got "
                         f"{settings.language_temperature}")
    weights = settings.source_weights
    if weights is not None and not (all(w >= 0 for w in weights) and sum(weights) > 0):
        raise ValueError(f"{where}.source_weights: weights must be >= 0 and not all 0, got "
                         f"{list(weights)}")
    if not isinstance(settings.same_source_batches, bool):
        raise ValueError(f"{where}.same_source_batches: expected true or false, got "
                         f"{settings.same_source_batches!r}")


@dataclass
class GlobalBatch:
    step: int
    kind: BatchKind
    items: np.ndarray  # [B] int64 global item ids (parallel ids first, then mono ids offset)
    query_lang: np.ndarray  # [B] int16 language index
    passage_lang: np.ndarray  # [B] int16
    fallbacks: int = 0
    """Pairs of a per-batch-language monolingual batch that lacked that language."""
    source: Optional[int] = None
    """The one source every item came from (``same_source_batches``); None when sources mix."""

    def rank_slice(self, dp_rank: int, dp_size: int) -> "GlobalBatch":
        """This data-parallel rank's contiguous share (B must divide by dp_size)."""
        b = len(self.items)
        if b % dp_size:
            raise ValueError(f"global batch {b} is not divisible by data-parallel size {dp_size}")
        part = slice(dp_rank * b // dp_size, (dp_rank + 1) * b // dp_size)
        return GlobalBatch(self.step, self.kind, self.items[part], self.query_lang[part],
                           self.passage_lang[part], self.fallbacks, self.source)

    def micro_batches(self, size: int) -> list["GlobalBatch"]:
        if len(self.items) % size:
            raise ValueError(f"batch of {len(self.items)} is not divisible by micro batch {size}")
        return [GlobalBatch(self.step, self.kind, self.items[i:i + size],
                            self.query_lang[i:i + size], self.passage_lang[i:i + size],
                            self.fallbacks, self.source) for i in range(0, len(self.items), size)]


def language_weights(counts: np.ndarray, temperature: float) -> np.ndarray:
    """Sampling weights count**(1/T) normalised; T <= 0 gives uniform weights."""
    counts = np.asarray(counts, dtype=np.float64)
    if temperature <= 0:
        w = (counts > 0).astype(np.float64)
    else:
        w = np.power(counts, 1.0 / temperature)
    return w / w.sum()


class HybridSampler:
    """Global batches for any step, from per-item language bitmasks and optional source ids.

    parallel_masks: [N_par] uint64, bit l set when item has query and positive in language l
    (items with fewer than two bits belong in ``mono_langs`` instead).
    mono_langs: [N_mono] int16, the single language of each monolingual-only item.
    """

    def __init__(self, config: SamplerConfig, *, num_languages: int,
                 parallel_masks: np.ndarray, mono_langs: Optional[np.ndarray] = None,
                 parallel_sources: Optional[np.ndarray] = None,
                 mono_sources: Optional[np.ndarray] = None):
        self.config = config
        self.num_languages = num_languages
        self.parallel_masks = np.asarray(parallel_masks, dtype=np.uint64)
        self.mono_langs = (np.zeros(0, np.int16) if mono_langs is None
                           else np.asarray(mono_langs, dtype=np.int16))
        n_par, n_mono = len(self.parallel_masks), len(self.mono_langs)
        self._sources = (_source_array(parallel_sources, n_par), _source_array(mono_sources, n_mono))
        self._weights = _normalised_weights(config.source_weights, self._sources)
        # Items a batch may hold: all, or those of sources with a weight above 0.
        self._drawable = tuple(np.ones(len(s), bool) if self._weights is None
                               else self._weights[s] > 0 for s in self._sources)
        b = config.global_batch_size
        if self.alpha < 1.0 and n_par < b:
            raise ValueError(f"cross-lingual batches need >= {b} items with two or more "
                             f"languages, got {n_par}")
        if n_par + n_mono < b:
            raise ValueError(f"global batch {b} is larger than the {n_par + n_mono} items")
        # Share of a monolingual batch filled from monolingual-only sources: proportional to
        # size, or to the source weights (each item carries its source's weight / source size).
        if n_mono == 0:
            self.mono_share = 0
        elif self._weights is None:
            self.mono_share = int(round(b * n_mono / (n_par + n_mono)))
        else:
            sizes = np.bincount(np.concatenate(self._sources), minlength=len(self._weights))
            per_item = self._weights / np.maximum(sizes, 1)
            mono_w = per_item[self._sources[_STREAM_MONO]].sum()
            par_w = per_item[self._sources[_STREAM_PARALLEL]].sum()
            self.mono_share = int(round(b * mono_w / (mono_w + par_w)))
        if b - self.mono_share > n_par or self.mono_share > n_mono:
            raise ValueError("not enough items to fill a monolingual batch without repeats")
        self._check_drawable()
        # One language at a time: an [items, languages] matrix would be GBs at 10M+ items.
        par_masks = self.parallel_masks[self._drawable[_STREAM_PARALLEL]]
        per_lang = np.array([int(((par_masks >> np.uint64(l)) & np.uint64(1)).sum())
                             for l in range(num_languages)], dtype=np.int64)
        per_lang = per_lang + np.bincount(self.mono_langs[self._drawable[_STREAM_MONO]],
                                          minlength=num_languages)
        self.lang_weights = language_weights(per_lang, config.language_temperature)
        self._kinds_cache = np.zeros(0, dtype=np.int8)
        self.same_source = None
        if config.same_source_batches:
            from megatron_hybridir.data.source_batches import SourceBatches

            self.same_source = SourceBatches(
                seed=config.seed, batch_size=b, parallel_sources=self._sources[_STREAM_PARALLEL],
                mono_sources=self._sources[_STREAM_MONO], weights=self._weights,
                kinds_possible=self._possible_kinds())

    def _possible_kinds(self) -> list[BatchKind]:
        if self.config.mode == "mixed":
            return [BatchKind.MIXED]
        return ([BatchKind.MONOLINGUAL] if self.alpha > 0 else []) + (
            [BatchKind.CROSS_LINGUAL] if self.alpha < 1 else [])

    def _check_drawable(self) -> None:
        """Zero source weights leave enough items for every stream a batch draws from (the mixed
        sources' streams; with ``same_source_batches`` each batch's source is checked instead,
        ``source_batches.SourceBatches``)."""
        if self._weights is None or self.config.same_source_batches:
            return
        b, m = self.config.global_batch_size, self.mono_share
        needs_parallel = b - m if self.alpha == 1.0 else b   # cross-lingual / mixed: all parallel
        for stream, need, name in ((_STREAM_PARALLEL, needs_parallel, "multilingual"),
                                   (_STREAM_MONO, m, "monolingual-only")):
            have = int(self._drawable[stream].sum())
            if need > have:
                zero = sorted({int(i) for i in np.unique(self._sources[stream])
                               if self._weights[i] == 0})
                raise ValueError(
                    f"sampler.source_weights: {list(self.config.source_weights)} leaves "
                    f"{have} {name} items with a weight above 0 (sources {zero} have weight 0), "
                    f"but batches of mode {self.config.mode} need {need} of them per global "
                    f"batch; give those sources a weight above 0 or change data.mode")

    # ---------------------------------------------------------------------------------------
    @property
    def alpha(self) -> float:
        return {"monolingual": 1.0, "cross-lingual": 0.0, "mixed": 0.0}.get(
            self.config.mode, self.config.alpha)

    def kinds(self, upto: int) -> np.ndarray:
        """Batch kinds of steps [0, upto) as ``BatchKind`` values in int8, a pure function of the
        seed (cached, vectorised)."""
        if len(self._kinds_cache) < upto:
            n = max(upto, 2 * len(self._kinds_cache), 1024)
            if self.config.mode == "mixed":
                kinds = np.full(n, BatchKind.MIXED, dtype=np.int8)
            else:
                draws = keyed_rng(self.config.seed, 0xB47C).random(n)
                kinds = np.where(draws < self.alpha, BatchKind.MONOLINGUAL,
                                 BatchKind.CROSS_LINGUAL).astype(np.int8)
            self._kinds_cache = kinds
        return self._kinds_cache[:upto]

    def _positions(self, step: int) -> tuple[int, int]:
        """Items consumed from the parallel and mono streams before ``step``."""
        kinds = self.kinds(step)
        n_mono_batches = int((kinds == BatchKind.MONOLINGUAL).sum())
        b, m = self.config.global_batch_size, self.mono_share
        return step * b - n_mono_batches * m, n_mono_batches * m

    def _take(self, stream: int, start: int, count: int) -> np.ndarray:
        size = len(self.parallel_masks) if stream == _STREAM_PARALLEL else len(self.mono_langs)
        out = np.empty(count, dtype=np.int64)
        filled = 0
        while filled < count:
            epoch, offset = divmod(start + filled, size)
            order = (_permutation(self.config.seed, stream, epoch, size) if self._weights is None
                     else _weighted_order(self.config.seed, stream, epoch,
                                          self._sources[stream], self._weights))
            chunk = order[offset:offset + count - filled]
            out[filled:filled + len(chunk)] = chunk
            filled += len(chunk)
        return out

    # ---------------------------------------------------------------------------------------
    def global_batch(self, step: int) -> GlobalBatch:
        """The whole global batch of ``step`` (identical on every rank)."""
        cfg = self.config
        kind = BatchKind(int(self.kinds(step + 1)[step]))
        source = None
        if self.same_source is not None:
            source, ids = self.same_source.items(step, self.kinds(step + 1))
            n_par = len(self.parallel_masks)
            par, mono = ids[ids < n_par], ids[ids >= n_par] - n_par
        else:
            par, mono = self._mixed_sources(step, kind)
        rng = keyed_rng(cfg.seed, step, 3)
        masks = self.parallel_masks[par]
        if kind == BatchKind.CROSS_LINGUAL:
            q, p = _cross_pairs(masks, self.lang_weights, rng)
            fallbacks = 0
        elif kind == BatchKind.MIXED:
            q = _draw_from_masks(masks, self.lang_weights, rng)
            p = _draw_from_masks(masks, self.lang_weights, rng)
            fallbacks = 0
        else:
            q, fallbacks = self._mono_languages(masks, rng)
            p = q
        items = np.concatenate([par, mono + len(self.parallel_masks)])
        q_all = np.concatenate([q, self.mono_langs[mono]]).astype(np.int16)
        p_all = np.concatenate([p, self.mono_langs[mono]]).astype(np.int16)
        return GlobalBatch(step, kind, items, q_all, p_all, fallbacks, source)

    def _mixed_sources(self, step: int, kind: BatchKind) -> tuple[np.ndarray, np.ndarray]:
        """(parallel, monolingual-only) items of ``step`` read from the two streams."""
        cfg = self.config
        par_pos, mono_pos = self._positions(step)
        n_mono = self.mono_share if kind == BatchKind.MONOLINGUAL else 0
        par = _unique(self._take(_STREAM_PARALLEL, par_pos, cfg.global_batch_size - n_mono),
                      keyed_rng(cfg.seed, step, 1), self._sources[_STREAM_PARALLEL],
                      self._drawable[_STREAM_PARALLEL])
        mono = (_unique(self._take(_STREAM_MONO, mono_pos, n_mono), keyed_rng(cfg.seed, step, 2),
                        self._sources[_STREAM_MONO], self._drawable[_STREAM_MONO])
                if n_mono else np.zeros(0, np.int64))
        return par, mono

    def _mono_languages(self, masks: np.ndarray, rng) -> tuple[np.ndarray, int]:
        if self.config.language_choice == "example":
            return _draw_from_masks(masks, self.lang_weights, rng), 0
        weights = self.lang_weights
        if self.same_source is not None and len(masks):
            from megatron_hybridir.data.source_batches import batch_language_weights

            weights = batch_language_weights(masks, weights)
        lang = int(rng.choice(self.num_languages, p=weights))
        has = ((masks >> np.uint64(lang)) & np.uint64(1)).astype(bool)
        langs = np.full(len(masks), lang, dtype=np.int64)
        if not has.all():
            langs[~has] = _draw_from_masks(masks[~has], self.lang_weights, rng)
        return langs, int((~has).sum())

    def global_batch_at_samples(self, consumed_samples: int) -> GlobalBatch:
        """Resume helper: the batch that follows ``consumed_samples`` training samples."""
        b = self.config.global_batch_size
        if consumed_samples % b:
            raise ValueError(f"consumed samples {consumed_samples} is not a multiple of the "
                             f"global batch {b}")
        return self.global_batch(consumed_samples // b)


@lru_cache(maxsize=4)
def _permutation(seed: int, stream: int, epoch: int, size: int) -> np.ndarray:
    return keyed_rng(seed, 0x5EED, stream, epoch).permutation(size)


def _source_array(sources: Optional[np.ndarray], n: int) -> np.ndarray:
    if sources is None:
        return np.zeros(n, dtype=np.int32)
    sources = np.asarray(sources, dtype=np.int32)
    if len(sources) != n:
        raise ValueError(f"expected {n} source ids, got {len(sources)}")
    return sources


def _normalised_weights(weights, sources) -> Optional[np.ndarray]:
    if weights is None:
        return None
    weights = np.asarray(weights, dtype=np.float64)
    present = max(int(s.max(initial=-1)) for s in sources) + 1
    if len(weights) != present:
        raise ValueError(f"sampler.source_weights: {len(weights)} weights for {present} sources")
    return weights / weights.sum()


def _weighted_order(seed: int, stream: int, epoch: int, sources: np.ndarray,
                    weights: np.ndarray) -> np.ndarray:
    """One epoch of a stream: each source contributes its weight's share of the stream's size."""
    rng = keyed_rng(seed, 0x50C, stream, epoch)
    size = len(sources)
    present = np.unique(sources)
    present = present[weights[present] > 0]     # weight 0: never drawn
    share = weights[present] / weights[present].sum()
    quotas = np.floor(share * size).astype(np.int64)
    quotas[: size - quotas.sum()] += 1  # distribute the rounding remainder
    parts = []
    for src, quota in zip(present, quotas):
        members = np.flatnonzero(sources == src)
        reps = -(-quota // len(members))
        picks = np.concatenate([rng.permutation(members) for _ in range(reps)])[:quota]
        parts.append(picks)
    return rng.permutation(np.concatenate(parts))


def _unique(items: np.ndarray, rng, sources: np.ndarray, drawable: np.ndarray) -> np.ndarray:
    """Replace repeats (epoch boundaries, upsampled sources) by unused items of the same source
    (else by any unused ``drawable`` item: never one of a zero-weight source)."""
    _, first = np.unique(items, return_index=True)
    if len(first) == len(items):
        return items
    used = set(items.tolist())
    for i in np.setdiff1d(np.arange(len(items)), first):
        members = np.flatnonzero(sources == sources[items[i]])
        free = np.setdiff1d(members, np.fromiter(used, dtype=np.int64), assume_unique=False)
        if len(free) == 0:  # the source is smaller than its share of this batch
            free = np.setdiff1d(np.flatnonzero(drawable), np.fromiter(used, dtype=np.int64))
        items[i] = int(free[rng.integers(len(free))])
        used.add(int(items[i]))
    return items


def _mask_matrix(masks: np.ndarray, num_languages: int) -> np.ndarray:
    bits = np.arange(num_languages, dtype=np.uint64)
    return ((masks[:, None] >> bits[None, :]) & np.uint64(1)).astype(bool)  # [n, L]


def _draw_from_masks(masks: np.ndarray, weights: np.ndarray, rng) -> np.ndarray:
    """One language per item among its own, proportional to the language weights."""
    allowed = _mask_matrix(masks, len(weights)) * weights[None, :]  # [n, L]
    allowed /= allowed.sum(1, keepdims=True)
    cum = allowed.cumsum(1)
    u = rng.random(len(masks))[:, None]
    return (u > cum).sum(1).clip(max=len(weights) - 1)


def _cross_pairs(masks: np.ndarray, weights: np.ndarray, rng):
    """(query, passage) languages with a != b, both among the item's languages."""
    q = _draw_from_masks(masks, weights, rng)
    rest = masks & ~(np.uint64(1) << q.astype(np.uint64))
    p = _draw_from_masks(rest, weights, rng)
    return q, p


def languages_to_mask(langs: Sequence[int]) -> int:
    mask = 0
    for lang in langs:
        mask |= 1 << int(lang)
    return mask
