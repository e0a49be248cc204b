"""Checks of the evaluation settings, each made as soon as what it needs is known, before anything is
encoded.

Why it exists: encoding a 21M-passage corpus takes hours; a misspelt measure, an index that cannot
be trained on the corpus, or a batch size of 0 must stop the run at once with the field, the value
and what is allowed — not after the encoding, and never with a silently different result (an
R@100 computed on a top-10 run). Three stages: :func:`check_config` (the settings alone),
:func:`check_model` (after the model is loaded: its positions and embedding size) and
:func:`check_retrieval_task` (after a corpus is read: its size). What it does not do: read data or
encode (``runner.py``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from megatron_hybridir.config import ConfigError
from megatron_hybridir.config.ranges import check_bounds
from megatron_hybridir.evaluation import metrics, search
from megatron_hybridir.evaluation.benchmarks import BENCHMARKS, Benchmark, score_qrels

if TYPE_CHECKING:
    from megatron_hybridir.evaluation.encoder import Encoder
    from megatron_hybridir.evaluation.config import EvalConfig

_PQ_CENTROIDS = 256          # FAISS PQ codebooks have 2^8 centroids: at least 256 training vectors


def _parse_measures(measures) -> list:
    import ir_measures

    if not measures:
        raise ConfigError(f"measures: expected at least one ir_measures measure, e.g. "
                          f"{list(metrics.DEFAULT_MEASURES)}")
    parsed = []
    for i, name in enumerate(measures):
        try:
            measure = ir_measures.parse_measure(str(name))
        except (NameError, ValueError, SyntaxError, TypeError) as err:
            raise ConfigError(f"measures[{i}]: {name!r} is not an ir_measures measure ({err}); "
                              f"expected e.g. {list(metrics.DEFAULT_MEASURES)}") from None
        cutoff = measure.params.get("cutoff")
        if cutoff is not None and (isinstance(cutoff, bool) or not isinstance(cutoff, int)
                                   or cutoff < 1):
            raise ConfigError(f"measures[{i}]: {name!r} has cutoff {cutoff!r}, expected an "
                              f"integer >= 1")
        parsed.append(measure)
    return parsed


def check_config(config: "EvalConfig") -> None:
    """Everything the settings alone decide."""
    if config.benchmark not in BENCHMARKS:
        raise ConfigError(f"benchmark: expected one of {list(BENCHMARKS)}, got {config.benchmark!r}")
    bench = BENCHMARKS[config.benchmark]
    enc = config.encoder
    if not enc.model:
        raise ConfigError("encoder.model: a Hugging Face or sentence-transformers folder is required")
    if config.hub and bench.load_hub is None:
        raise ConfigError(f"hub: {bench.name} {bench.no_hub or 'has no hub loader; set data='}")
    if not config.data and not (config.hub and not bench.hub_data):
        raise ConfigError("data: the benchmark folder is required")
    if config.data and not config.hub and not Path(config.data).exists():
        raise ConfigError(f"data: {config.data} does not exist")
    check_bounds(config, "", ConfigError)   # the ranges on EvalConfig's and EncoderConfig's fields
    try:
        search.spec_of(config)             # index (nprobe, ef_search, nlist, hnsw_m: their ranges)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if enc.truncate_dim is not None:
        if not enc.truncate_dim:
            raise ConfigError("encoder.truncate_dim: expected a non-empty list of sizes or null")
        if len(set(enc.truncate_dim)) != len(enc.truncate_dim):
            raise ConfigError(f"encoder.truncate_dim: sizes repeat in {enc.truncate_dim}")
    if config.languages is not None and len(set(config.languages)) != len(config.languages):
        raise ConfigError(f"languages: a language is named twice in {config.languages}")
    _parse_measures(config.measures)


def max_positions(encoder: "Encoder"):
    """The longest input the model's position table allows, or None when it cannot be told."""
    first = encoder.model[0] if len(encoder.model) else None
    model_config = getattr(getattr(first, "auto_model", None), "config", None)
    limits = []
    positions = getattr(model_config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        # RoBERTa-style models start positions after the padding index (514 rows, 512 tokens).
        if getattr(model_config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
            positions -= (getattr(model_config, "pad_token_id", 1) or 0) + 1
        limits.append(positions)
    tokenizer_limit = getattr(getattr(first, "tokenizer", None), "model_max_length", None)
    if isinstance(tokenizer_limit, int) and 0 < tokenizer_limit < 10**7:   # unset: 1e30
        limits.append(tokenizer_limit)
    return min(limits) if limits else None


def check_model(config: "EvalConfig", encoder: "Encoder") -> None:
    """What needs the loaded model: its positions, its embedding size, the index for that size."""
    from megatron_hybridir.evaluation import matryoshka

    limit = max_positions(encoder)
    if config.encoder.max_length and limit is not None and config.encoder.max_length > limit:
        raise ConfigError(f"encoder.max_length: {config.encoder.max_length} is above what "
                          f"{config.encoder.model} can take; expected an integer in [1, {limit}]")
    if config.encoder.truncate_dim:
        matryoshka.check_dims(config.encoder.truncate_dim, encoder.dim)
    index = search.spec_of(config)
    if BENCHMARKS[config.benchmark].kind == "retrieval" and not index.exact:
        import faiss

        spec = index.factory(encoder.dim, 1_000_000)
        try:
            faiss.index_factory(encoder.dim, spec, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as err:
            reason = str(err).strip().splitlines()[-1][:200]
            raise ConfigError(f"index: {config.index!r} (FAISS {spec!r}) cannot be built for "
                              f"{encoder.dim}-dimensional embeddings ({reason}); expected one of "
                              f"{list(search.NAMED_KINDS)} or a valid FAISS factory string") from None


def _training_need(spec: str) -> int:
    """Training vectors FAISS needs for a factory string: the IVF list count, 256 for PQ."""
    need = 0
    ivf = re.match(r"IVF(\d+)", spec)
    if ivf:
        need = int(ivf.group(1))
    if re.search(r"PQ\d+", spec):
        need = max(need, _PQ_CENTROIDS)
    return need


def check_retrieval_task(config: "EvalConfig", bench: Benchmark, task, dim: int) -> None:
    """What needs the corpus size: the index's training set and the measures' depth."""
    size = len(task.corpus_ids)
    index = search.spec_of(config)
    if not index.exact:
        spec = index.factory(dim, size)
        rows = min(size, search.TRAIN_SHARDS * config.shard_size, search.TRAIN_SIZE)
        need = _training_need(spec)
        if rows < need:
            raise ConfigError(
                f"index: {config.index!r} (FAISS {spec!r}) needs at least {need} training vectors, "
                f"but the {task.name} corpus gives {rows} ({size} passages, first "
                f"{search.TRAIN_SHARDS} shards of shard_size={config.shard_size}); use index=exact or "
                f"hnsw, or a larger shard_size")
    if bench.score is not score_qrels or config.k >= size:
        return                                  # the run holds the whole ranking
    for i, measure in enumerate(_parse_measures(config.measures)):
        if "cutoff" not in measure.SUPPORTED_PARAMS:
            continue
        cutoff = measure.params.get("cutoff")
        if cutoff is None or cutoff > config.k:
            raise ConfigError(
                f"measures[{i}]: {config.measures[i]!r} looks "
                f"{'at the whole ranking' if cutoff is None else f'{cutoff} deep'}, but only the "
                f"top k={config.k} of {size} passages are retrieved; expected a cutoff in "
                f"[1, {config.k}] or k >= {min(size, cutoff or size)}")
