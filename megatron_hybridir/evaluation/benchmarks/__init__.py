"""The benchmark registry (``base.py``) and the benchmarks in it.

Each module imported below registers its entries when imported; adding a benchmark is its file
plus one import line here. The import order is the registry's order.
"""

from megatron_hybridir.evaluation.benchmarks.base import (BENCHMARKS, KINDS, Benchmark,
                                                          TaskSource, choices_help,
                                                          register_benchmark, score_answers,
                                                          score_qrels)
from megatron_hybridir.evaluation.benchmarks import builtin  # noqa: F401,E402  BEIR ... LAReQA

__all__ = ["BENCHMARKS", "KINDS", "Benchmark", "TaskSource", "choices_help",
           "register_benchmark", "score_answers", "score_qrels"]
