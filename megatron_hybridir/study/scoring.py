"""Per-query scores of one model on the demo benchmark, in both forms, for paired statistics.

Why it exists: ``evaluation.runner`` reports means per setting, but a paired test needs the score of
every query (DESIGN.md §8). This module encodes each text once and keeps, per query:

- ``beir_ndcg10``: nDCG@10 in the BEIR form of each language (a query searches the passages of its
  own language; ir_measures / pytrec_eval) — the monolingual side, the stand-in for BEIR / NQ;
- ``mono_mAP``: LAReQA X->X average precision; ``cross_mAP``: the mean over the n-1 X->Y settings
  of the query's average precision; ``multi_mAP``: average precision in the multilingual pool;
- ``rank_distance`` and ``same_language_top``: the language-bias measures of DESIGN.md §6.

A query is ``<lang>:<question id>``. The means of these tables equal the runner's summary numbers
(``mono_mAP``, ``cross_mAP``, ``multi_mAP``, ``rank_distance``, ``same_language_top``, per-language
nDCG@10) when every question exists in every language, as in the demo (tested against the runner).
What it does not do: load checkpoints or train; it takes an :class:`Encoder`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from megatron_hybridir.evaluation import loaders, metrics, search
from megatron_hybridir.evaluation.encoder import Encoder

METRICS = ("beir_ndcg10", *metrics.LAREQA_SUMMARY)
LOWER_IS_BETTER = frozenset({"rank_distance"})


def lareqa_query_scores(folder: str | Path, encoder: Encoder,
                        languages: Optional[Sequence[str]] = None) -> dict[str, dict[str, float]]:
    """{metric: {query: value}} for the LAReQA-form metrics and the bias measures."""
    task = loaders.load_lareqa(folder, list(languages) if languages else None, name="lareqa")
    langs = task.languages
    q_emb = {a: encoder.encode_queries(list(task.questions[a].values())) for a in langs}
    c_emb = {a: encoder.encode_passages([s for _, s, _ in task.candidates[a]]) for a in langs}
    index = {a: {cid: i for i, (cid, _, _) in enumerate(task.candidates[a])} for a in langs}
    offsets = np.cumsum([0] + [len(task.candidates[a]) for a in langs])
    pool = np.concatenate([c_emb[a] for a in langs])
    out: dict[str, dict[str, float]] = {m: {} for m in METRICS if m != "beir_ndcg10"}
    for a in langs:
        qids = list(task.questions[a])
        per_target = {}
        for b in langs:
            rows = [i for i, q in enumerate(qids) if q in task.answer[b]]
            rel = [[index[b][task.answer[b][qids[i]]]] for i in rows]
            ranks = metrics.relevant_ranks(q_emb[a][rows], c_emb[b], rel)
            per_target[b] = {qids[i]: 1.0 / float(r[0]) for i, r in zip(rows, ranks)}
        present = [[b for b in langs if q in task.answer[b]] for q in qids]
        relevant = [[int(offsets[langs.index(b)]) + index[b][task.answer[b][q]] for b in bs]
                    for q, bs in zip(qids, present)]
        pool_ranks = metrics.relevant_ranks(q_emb[a], pool, relevant)
        for q, bs, r in zip(qids, present, pool_ranks):
            key = f"{a}:{q}"
            if q in per_target[a]:
                out["mono_mAP"][key] = per_target[a][q]
            cross = [per_target[b][q] for b in langs if b != a and q in per_target[b]]
            if cross:
                out["cross_mAP"][key] = float(np.mean(cross))
            if len(r):
                out["multi_mAP"][key] = metrics.rank_metrics([r])["mAP"]
            if len(r) >= 2:
                out["rank_distance"][key] = float(r.max() - r.min())
                out["same_language_top"][key] = float(bs[int(np.argmin(r))] == a)
    return out


def beir_query_scores(root: str | Path, encoder: Encoder, languages: Sequence[str],
                      measure: str = "nDCG@10") -> dict[str, float]:
    """{<lang>:<query id>: nDCG@10} over the BEIR folders ``root/<lang>`` (exact search)."""
    import ir_measures

    parsed = ir_measures.parse_measure(measure)
    out = {}
    for lang in languages:
        task = loaders.load_beir(Path(root) / lang)
        corpus = encoder.encode_passages([task.passage(i) for i in range(len(task.corpus_ids))])
        queries = encoder.encode_queries(task.query_texts)
        k = min(100, len(task.corpus_ids))
        scores, positions = search.exact_search(queries, [(corpus, np.arange(len(corpus)))], k,
                                                 use_gpu=False)
        run = metrics.run_from_search(task.query_ids, task.corpus_ids, scores, positions)
        values = {q: 0.0 for q in task.qrels}      # unretrieved judged queries score 0 (trec_eval -c)
        for row in ir_measures.iter_calc([parsed], task.qrels, run):
            values[row.query_id] = float(row.value)
        out.update({f"{lang}:{q}": v for q, v in values.items()})
    return out


class _QueryCache:
    """The encoder with query embeddings memoised by text: the demo's BEIR-form queries are the
    LAReQA questions, so each is encoded once per split (same prompt, so the same vectors)."""

    def __init__(self, encoder: Encoder):
        self.encoder, self.cache = encoder, {}

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in self.cache))
        if missing:
            self.cache.update(zip(missing, self.encoder.encode_queries(missing)))
        return np.stack([self.cache[t] for t in texts])

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self.encoder.encode_passages(texts)


def query_scores(split_root: str | Path, encoder: Encoder, languages: Sequence[str], *,
                 beir: bool = True) -> dict[str, dict[str, float]]:
    """Every metric of :data:`METRICS` per query on one split (``<root>/lareqa``, ``<root>/beir``)."""
    encoder = _QueryCache(encoder)
    out = lareqa_query_scores(Path(split_root) / "lareqa", encoder, languages)
    if beir:
        out["beir_ndcg10"] = beir_query_scores(Path(split_root) / "beir", encoder, languages)
    return out


def summarize(scores: dict[str, dict[str, float]]) -> dict[str, float]:
    """Mean of each metric over its queries."""
    return {m: float(np.mean(list(v.values()))) for m, v in scores.items() if v}


def dev_score(scores: dict[str, dict[str, float]]) -> float:
    """The early-stopping criterion: the mean of X->X and X->Y mAP, so neither side of the trade-off
    decides alone when a run has converged."""
    means = summarize(scores)
    return 0.5 * (means["mono_mAP"] + means["cross_mAP"])
