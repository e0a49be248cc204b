"""The benchmark registry: one :class:`Benchmark` entry per ``benchmark=`` value.

Why it exists: a benchmark is known in several places — the config check (which names are valid,
whether ``hub=true`` is offered, whether ``data=`` is needed), the runner (how to load it, in which
of the two shapes it is scored, with which metrics) and the CLI help. Each entry carries all of
it, so those places read :data:`BENCHMARKS` instead of keeping their own lists:

- ``kind``: ``retrieval`` (a corpus, disk shards and FAISS, ``RetrievalTask``) or ``lareqa``
  (parallel QA scored from exact ranks in every X->Y setting and the multilingual pool,
  ``LAReQATask``; docs/design.md §9.5). The kind decides the report's shape: retrieval results
  carry ``sizes`` (or ``per_language``), LAReQA results the setting matrix, heatmap and bias;
- ``load`` / ``load_hub``: ``(source) -> task`` from the local folder ``data=`` or through
  ``datasets``; ``source`` is a :class:`TaskSource` (``data``, ``languages``, ``language``,
  ``split``), the only part of the config a loader sees, filled from it in one place
  (:meth:`Benchmark.load_task`); ``language`` is None except for per-language benchmarks,
  ``split`` is the entry's :meth:`Benchmark.split`;
- settings: ``languages`` (per-language retrieval benchmarks run once per language and report
  the mean, MIRACL), ``default_split`` (used while ``split`` is left at ``test``), ``hub_data``
  (with ``hub=true``, ``data=`` still names the dataset: BEIR), ``no_hub`` (why there is no hub
  copy);
- ``score``: the retrieval metrics, ``(config, task, scores, positions) -> {name: value}``
  (ir_measures on qrels, or DPR's answer matching for NQ); LAReQA's are fixed (§9.5).

The built-in entries are in ``builtin.py``. Adding a benchmark of an existing kind is one file (its
loader and its ``register_benchmark(Benchmark(...))``) plus one import line in
``benchmarks/__init__.py`` (README "Layout"). What it does not do: encode, search or score
(``runner.py``, ``metrics.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional, Union

from megatron_hybridir.evaluation import metrics
from megatron_hybridir.evaluation.tasks import LAReQATask, RetrievalTask

if TYPE_CHECKING:
    from megatron_hybridir.evaluation.config import EvalConfig

KINDS = ("retrieval", "lareqa")
Task = Union[RetrievalTask, LAReQATask]


@dataclass(frozen=True)
class TaskSource:
    """What a loader reads a task from: the evaluation config's ``data`` and ``languages``, the
    language of a per-language run and the split, so that a loader takes what it uses and not the
    whole config."""

    data: str
    """``data=``: the local folder (with ``hub=true``: a dataset name or unused)."""
    languages: Optional[list[str]]
    """``languages=`` (None: the benchmark's default, e.g. all found)."""
    language: Optional[str]
    """The language of this run for per-language benchmarks (MIRACL), else None."""
    split: str
    """The entry's split (:meth:`Benchmark.split`)."""


Loader = Callable[[TaskSource], Task]


def score_qrels(config: "EvalConfig", task: RetrievalTask, scores, positions) -> dict[str, float]:
    """ir_measures on the top-k run (``config.measures``)."""
    run = metrics.run_from_search(task.query_ids, task.corpus_ids, scores, positions)
    return metrics.ir_metrics(task.qrels, run, config.measures)


def score_answers(config: "EvalConfig", task: RetrievalTask, scores, positions) -> dict[str, float]:
    """DPR's top-k accuracy: a hit when a retrieved passage contains an answer string (§9.4)."""
    hits = metrics.answer_hits(positions, task.corpus_texts,
                               [task.answers[q] for q in task.query_ids])
    return metrics.topk_accuracy(hits, [c for c in (1, 5, 20, 100) if c <= positions.shape[1]])


@dataclass(frozen=True)
class Benchmark:
    name: str
    kind: str
    load: Loader
    load_hub: Optional[Loader] = None
    no_hub: str = ""
    hub_data: bool = False
    languages: Optional[Callable[["EvalConfig"], list[str]]] = None
    default_split: Optional[str] = None
    score: Callable = score_qrels
    about: str = ""

    def split(self, config: "EvalConfig") -> str:
        return self.default_split if self.default_split and config.split == "test" else config.split

    def load_task(self, config: "EvalConfig", language: Optional[str] = None) -> Task:
        """The task from the hub or the local folder, as ``config.hub`` says."""
        load = self.load_hub if config.hub else self.load
        return load(TaskSource(data=config.data, languages=config.languages, language=language,
                               split=self.split(config)))


# name -> entry, in the order the CLI help and error messages list them.
BENCHMARKS: dict[str, Benchmark] = {}


def register_benchmark(entry: Benchmark) -> Benchmark:
    if entry.kind not in KINDS:
        raise ValueError(f"benchmark {entry.name!r}: kind {entry.kind!r} is not one of {list(KINDS)}")
    if entry.name in BENCHMARKS and BENCHMARKS[entry.name] is not entry:
        raise ValueError(f"benchmark {entry.name!r} is already registered")
    BENCHMARKS[entry.name] = entry
    return entry


def choices_help() -> str:
    """One line per benchmark, for ``--help``."""
    return "\n".join(f"  {b.name:<9} {b.kind:<9} {b.about}" for b in BENCHMARKS.values())
