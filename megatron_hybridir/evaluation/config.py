"""The settings of one evaluation run, as plain data.

Why it exists: the runner, the checks, the benchmark loaders, the CLI's loader and the study all
read :class:`EvalConfig`; keeping it apart from ``runner.py`` lets them import the settings without
the runner (and without what the runner imports). What it does not do: check the values
(``checks.py``) or run anything (``runner.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Optional

from megatron_hybridir.config.instructions import DEFAULT_TEMPLATE
from megatron_hybridir.config.ranges import COUNT, OPTIONAL_COUNT
from megatron_hybridir.evaluation import metrics
from megatron_hybridir.evaluation.encoder import EncoderConfig


@dataclass
class EvalConfig:
    benchmark: str = ""
    """A key of evaluation.benchmarks.BENCHMARKS."""
    data: str = ""
    """Local folder; with hub=true a BEIR name (beir) or unused (miracl)"""
    output: str = "runs/eval"
    """Where results.json, results.md and the PNG plots go."""
    hub: bool = False
    """Read BEIR / MIRACL / NQ / XQuAD-R through `datasets` (network)"""
    languages: Optional[list[str]] = None
    """MIRACL / LAReQA languages (default: all found)"""
    split: str = "test"
    """BEIR qrels split; MIRACL uses "dev" when left at "test"."""
    k: Annotated[int, COUNT] = 100
    """Retrieval depth for BEIR / NQ / MIRACL."""
    measures: list[str] = field(default_factory=lambda: list(metrics.DEFAULT_MEASURES))
    index: str = "exact"
    """exact (alias: flat) | ivf | hnsw | pq | any FAISS factory string (evaluation.search.IndexSpec)."""
    nprobe: Annotated[int, COUNT] = 64
    """IVF lists visited per query."""
    ef_search: Annotated[int, COUNT] = 256
    """HNSW search breadth."""
    nlist: Annotated[Optional[int], OPTIONAL_COUNT] = None
    """IVF lists (default 4 * sqrt(corpus size))"""
    hnsw_m: Annotated[int, COUNT] = 32
    """HNSW links per node."""
    shard_size: Annotated[int, COUNT] = 100_000
    """Passages per on-disk embedding shard."""
    float16_shards: bool = False
    cache_dir: str = ""
    """Default: <output>/cache."""
    candidate_context: bool = False
    """LAReQA: encode "sentence context" instead of the sentence."""
    plots: bool = True
    progress: bool = True
    instruction: Optional[str] = None
    """Task instruction on queries: null = none (the model's query prompt), "default" = the
    benchmark's documented one (evaluation/instruction.py), else the instruction text."""
    instruction_template: str = DEFAULT_TEMPLATE
    """Must end with {text}; replaces the query prompt."""
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
