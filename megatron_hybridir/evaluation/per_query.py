"""Per-query scores and TREC runs of one evaluation, written beside ``results.json``.

Why it exists: ``results.json`` keeps means, but a paired significance test across runs (the
cluster study's report, ``study.cluster_report``) needs every query's score, and a TREC run lets
anyone rescore a model with trec_eval without re-encoding. The runner hands each scored setting to a
:class:`PerQueryTable`, which writes:

- ``per_query.jsonl``: one row ``{"setting", "query", "metric", "value"}`` per query and measure.
  Settings: ``all`` (BEIR, NQ: every ``config.measures`` / top-k accuracy), the language
  (MIRACL: one setting per language), ``X->Y`` (LAReQA: AP of each X->X / X->Y setting),
  ``pool:X`` (AP in the multilingual pool, queries of language X) and ``bias:X`` (rank distance and
  same-language top of the queries of language X that have two or more relevant candidates).
  The mean of a setting's rows is the number results.json reports for it (tested per benchmark
  kind), and results.json's summary is the mean of those setting means.
- ``run.trec`` (``qid Q0 docid rank score tag``, top ``k``): the retrieval run; MIRACL writes
  ``run.<lang>.trec`` (query ids repeat across languages), LAReQA the multilingual-pool run with
  query ids ``<lang>:<qid>`` (a run per X->Y setting would be 121 x queries x k lines).

What it does not do: aggregate, or per-query tables per Matryoshka dimension (the full dimension
only).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from megatron_hybridir.evaluation import metrics

log = logging.getLogger(__name__)
TABLE = "per_query.jsonl"


def answer_table(task, positions: np.ndarray) -> dict[str, dict[str, float]]:
    """NQ: {"topK": {query: 0/1}} with the cut-offs ``score_answers`` reports."""
    hits = metrics.answer_hits(positions, task.corpus_texts, [task.answers[q] for q in task.query_ids])
    return {f"top{k}": {q: float(row[:k].any()) for q, row in zip(task.query_ids, hits)}
            for k in (1, 5, 20, 100) if k <= positions.shape[1]}


def trec_lines(query_ids: Sequence[str], doc_ids: Sequence[str], scores: np.ndarray,
               positions: np.ndarray, tag: str) -> list[str]:
    """TREC run lines; rank 1 = the highest score, missing hits (position -1) skipped."""
    lines = []
    for qid, row_s, row_p in zip(query_ids, scores, positions):
        kept = [(float(s), int(p)) for s, p in zip(row_s, row_p) if p >= 0]
        for rank, (s, p) in enumerate(sorted(kept, key=lambda x: -x[0]), start=1):
            lines.append(f"{qid} Q0 {doc_ids[p]} {rank} {s:.6f} {tag}")
    return lines


class PerQueryTable:
    """Rows and runs gathered while a benchmark is scored; :meth:`write` puts them on disk."""

    def __init__(self, tag: str = "megatron_hybridir"):
        self.tag = "".join(c if c.isalnum() or c in "._-" else "_" for c in tag) or "run"
        self.rows: list[tuple[str, str, str, float]] = []
        self.runs: dict[str, list[str]] = {}

    def add(self, setting: str, table: dict[str, dict[str, float]]) -> None:
        for metric, values in table.items():
            self.rows += [(setting, str(q), metric, float(v)) for q, v in values.items()]

    def add_retrieval(self, bench, config, task, scores: np.ndarray, positions: np.ndarray,
                      setting: str = "all") -> None:
        """BEIR / MIRACL (ir_measures per query) and NQ (answer hits per query)."""
        from megatron_hybridir.evaluation.benchmarks import score_answers, score_qrels

        if bench.score is score_qrels:
            run = metrics.run_from_search(task.query_ids, task.corpus_ids, scores, positions)
            self.add(setting, metrics.ir_per_query(task.qrels, run, config.measures))
        elif bench.score is score_answers:
            self.add(setting, answer_table(task, positions))
        else:
            log.warning("%s: custom score function; no per-query table for setting %s", bench.name, setting)
        name = "run.trec" if setting == "all" else f"run.{setting}.trec"
        self.runs[name] = trec_lines(task.query_ids, task.corpus_ids, scores, positions, self.tag)

    def add_ranks(self, setting: str, query_ids: Sequence[str], ranks: Sequence[np.ndarray]) -> None:
        """LAReQA: AP per query from the ranks of its relevant candidates (queries without one are
        skipped, as ``rank_metrics`` skips them)."""
        self.add(setting, {"AP": {q: metrics.average_precision(r)
                                  for q, r in zip(query_ids, ranks) if len(r)}})

    def add_bias(self, query_keys: Sequence[tuple[str, str]], ranks, rank_langs, query_langs) -> None:
        """Language-bias measures per query, setting ``bias:<query language>``."""
        for (lang, qid), (_, dist, same) in zip(query_keys, metrics.bias_per_query(ranks, rank_langs,
                                                                                  query_langs)):
            if dist is not None:
                self.rows += [(f"bias:{lang}", qid, "rank_distance", dist),
                              (f"bias:{lang}", qid, "same_language_top", same)]

    def add_pool_run(self, query_ids: Sequence[str], queries: np.ndarray, pool: np.ndarray,
                     pool_ids: Sequence[str], k: int, chunk: int = 512) -> None:
        """Top-k of the multilingual pool by inner product, appended to ``run.trec``."""
        import torch

        cand = torch.from_numpy(np.ascontiguousarray(pool, dtype=np.float32))
        k = min(k, cand.shape[0])
        for start in range(0, len(queries), chunk):
            q = torch.from_numpy(np.ascontiguousarray(queries[start:start + chunk], dtype=np.float32))
            top = torch.topk(q @ cand.T, k, dim=1)
            self.runs.setdefault("run.trec", []).extend(trec_lines(
                query_ids[start:start + chunk], pool_ids, top.values.numpy(), top.indices.numpy(), self.tag))

    def write(self, folder: Path) -> dict:
        """Write the table and the runs; returns what results.json records about them."""
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / TABLE, "w") as f:
            for setting, query, metric, value in self.rows:
                f.write(json.dumps({"setting": setting, "query": query, "metric": metric,
                                    "value": value}) + "\n")
        for name, lines in self.runs.items():
            (folder / name).write_text("\n".join(lines) + ("\n" if lines else ""))
        return {"table": TABLE, "rows": len(self.rows), "runs": sorted(self.runs)}


def read_table(path: Path) -> dict[str, dict[str, dict[str, float]]]:
    """{setting: {metric: {query: value}}} from ``per_query.jsonl``; a bad line names file and line."""
    out: dict = {}
    with open(path) as f:
        for n, line in enumerate(f, start=1):
            try:
                row = json.loads(line)
                value = float(row["value"])
                out.setdefault(row["setting"], {}).setdefault(row["metric"], {})
                if row["query"] in out[row["setting"]][row["metric"]]:
                    raise ValueError(f"query {row['query']!r} repeated")
                out[row["setting"]][row["metric"]][row["query"]] = value
            except (ValueError, KeyError, TypeError) as err:
                raise ValueError(f"{path}:{n}: expected a row with setting, query, metric and a "
                                 f"number value ({err}); got {line.strip()[:200]!r}") from None
    return out


def setting_means(table: dict[str, dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """{setting: {metric: mean over its queries}}."""
    return {s: {m: float(np.mean(list(v.values()))) for m, v in by_metric.items()}
            for s, by_metric in table.items()}

