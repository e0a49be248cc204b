"""Metrics: IR measures through ir_measures (pytrec_eval), LAReQA mAP from exact ranks, NQ answer
matching, and the language-bias measures of docs/design.md §9.6.

Why it exists: BEIR / MIRACL metrics come from runs (top-k lists) and go through ir_measures, never
hand-rolled. XQuAD-R / MLQA-R have 121 (+49) settings over pools of ~13k candidates whose mAP is
defined on the full ranking; building full runs for pytrec_eval would mean 170M dictionary entries,
so :func:`relevant_ranks` computes the exact rank of each relevant candidate (ties broken as
trec_eval breaks them: equal scores rank by document id, descending) and :func:`rank_metrics` turns ranks into AP and recall —
tests check both against ir_measures on full runs. NQ accuracy uses DPR's answer normalisation.
"""

from __future__ import annotations

import unicodedata
from typing import Iterable, Optional, Sequence

import numpy as np
import regex

DEFAULT_MEASURES = ("nDCG@10", "R@100", "RR@10", "AP@100")
# The LAReQA summary a run, the demo table and the study compare (``runner._lareqa_summary`` computes
# them): X->X, X->Y and multilingual-pool mAP, then the two language-bias measures.
LAREQA_SUMMARY = ("mono_mAP", "cross_mAP", "multi_mAP", "rank_distance", "same_language_top")
# ir_measures families whose per-query value is a share or a precision, hence in [0, 1].
BOUNDED_MEASURES = frozenset({"AP", "nDCG", "R", "RR", "P", "Success", "Judged", "Rprec", "Bpref",
                              "infAP", "SetP", "SetR", "SetF", "SetAP", "ERR", "NERR8", "NERR9",
                              "NERR10", "NERR11", "alpha_nDCG", "INST", "INSQ", "Compat"})


class MetricRangeError(ValueError):
    """A metric left its range (an AP above 1, a rank below 1): the scores or ranks it was computed
    from are invalid (non-finite embeddings, a broken tie rule). Never reported as a result."""


def check_range(name: str, values, low: float, high: float = float("inf")) -> None:
    """Raise :class:`MetricRangeError` unless every value is finite and in [low, high]."""
    arr = np.asarray(values, dtype=np.float64).ravel()
    bad = ~(np.isfinite(arr) & (arr >= low) & (arr <= high))
    if bad.any():
        raise MetricRangeError(f"metric {name}: {int(bad.sum())} value(s) outside [{low}, {high}], "
                               f"e.g. {float(arr[bad][0])!r}; the scores or ranks it was computed from "
                               f"are invalid (non-finite embeddings?)")


def run_from_search(query_ids: Sequence[str], doc_ids: Sequence[str], scores: np.ndarray,
                    positions: np.ndarray) -> dict[str, dict[str, float]]:
    run = {}
    for qid, row_s, row_p in zip(query_ids, scores, positions):
        run[qid] = {doc_ids[p]: float(s) for s, p in zip(row_s, row_p) if p >= 0}
    return run


def ir_metrics(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]],
               measures: Iterable[str] = DEFAULT_MEASURES) -> dict[str, float]:
    """Mean over judged queries (a query with no retrieved document scores 0, as in trec_eval -c)."""
    return {name: float(np.mean(list(values.values())))
            for name, values in ir_per_query(qrels, run, measures).items()}


def trec_tie_order(doc_ids: Sequence[str]) -> np.ndarray:
    """Per document, its place among equal scores as trec_eval ranks them (0 = first).

    trec_eval (``form_res_rels.c``, ``comp_sim_docno``) sorts a run by score descending, then by
    ``strcmp`` of the docno descending; Python compares str by code point, which is UTF-8 byte
    order, i.e. strcmp's. pytrec_eval and ir_measures inherit the rule.
    """
    ids = np.asarray(list(doc_ids), dtype=object)
    if len(set(ids.tolist())) != len(ids):
        raise ValueError("candidate ids are not unique: trec_eval's tie order would be undefined")
    ascending = np.argsort(ids, kind="stable")
    place = np.empty(len(ids), dtype=np.int64)
    place[ascending] = np.arange(len(ids) - 1, -1, -1)    # the largest id comes first
    return place


def relevant_ranks(queries: np.ndarray, candidates: np.ndarray, relevant: Sequence[Sequence[int]],
                   chunk: int = 512, *, candidate_ids: Optional[Sequence[str]] = None
                   ) -> list[np.ndarray]:
    """1-based rank of each relevant candidate for each query under inner-product scoring.

    rank = 1 + #{higher score} + #{equal score ranked before it}; exact, and memory is bounded by
    [chunk, n_candidates] scores. With ``candidate_ids`` equal scores are ordered as trec_eval
    orders them (:func:`trec_tie_order`), so mAP equals pytrec_eval's on the full run; without
    them, by candidate position.
    """
    import torch

    cand = torch.from_numpy(np.ascontiguousarray(candidates, dtype=np.float32))
    # NaN compares false with everything: a NaN score would rank every relevant item first.
    for what, emb in (("candidate", cand), ("query", np.asarray(queries, dtype=np.float32))):
        finite = np.isfinite(np.asarray(emb)).all(axis=1) if len(emb) else np.ones(0, bool)
        if not finite.all():
            raise ValueError(f"{int((~finite).sum())} of {len(emb)} {what} embeddings are not "
                             f"finite (first at row {int(np.flatnonzero(~finite)[0])}); ranks "
                             f"would be meaningless")
    if candidate_ids is not None:
        if len(candidate_ids) != cand.shape[0]:
            raise ValueError(f"{len(candidate_ids)} candidate ids for {cand.shape[0]} candidates")
        positions = torch.from_numpy(trec_tie_order(candidate_ids))
    else:
        positions = torch.arange(cand.shape[0])
    out = []
    for start in range(0, len(queries), chunk):
        q = torch.from_numpy(np.ascontiguousarray(queries[start:start + chunk], dtype=np.float32))
        scores = q @ cand.T                                                     # [chunk, n_cand]
        for row, rel in zip(scores, relevant[start:start + chunk]):
            rel_t = torch.as_tensor(list(rel), dtype=torch.long)
            if rel_t.numel() == 0:
                out.append(np.zeros(0, dtype=np.int64))
                continue
            s = row[rel_t][:, None]                                             # [n_rel, 1]
            higher = (row[None, :] > s).sum(1)
            ties = ((row[None, :] == s) & (positions[None, :] < positions[rel_t][:, None])).sum(1)
            ranks = (1 + higher + ties).numpy()
            check_range("rank", ranks, 1, cand.shape[0])
            out.append(ranks)
    return out


def rank_metrics(ranks: Sequence[np.ndarray], cutoffs: Sequence[int] = (1, 10)
                 ) -> dict[str, Optional[float]]:
    """mAP and recall@k from the ranks of the relevant items, macro-averaged over queries.

    With no query that has a relevant item every value is None (n/a): a setting nothing was asked
    in has no score, and a 0.0 would enter the means as a failure."""
    aps, recalls = [], {k: [] for k in cutoffs}
    for r in ranks:
        if len(r) == 0:
            continue
        r = np.sort(r)
        # n distinct relevant items occupy n distinct ranks: the j-th best is at rank >= j.
        check_range("rank - position among the relevant", r - np.arange(1, len(r) + 1), 0)
        aps.append(float(np.mean(np.arange(1, len(r) + 1) / r)))
        for k in cutoffs:
            recalls[k].append(float(np.mean(r <= k)))
    result = {"mAP": float(np.mean(aps)) if aps else None}
    result.update({f"R@{k}": float(np.mean(v)) if v else None for k, v in recalls.items()})
    for name, value in result.items():
        if value is not None:
            check_range(name, value, 0.0, 1.0)
    return result


def language_bias(ranks: Sequence[np.ndarray], rank_langs: Sequence[Sequence[str]],
                  query_langs: Sequence[str]) -> dict[str, object]:
    """Huang et al. (SIGIR 2023) rank distance in the multilingual pool, and same-language preference.

    For each query: distance = max rank - min rank of its relevant candidates (one per language);
    averaged per query language, then macro-averaged. Preference: share of queries whose best-ranked
    relevant candidate is in the query's language.
    """
    by_lang: dict[str, list[float]] = {}
    pref: dict[str, list[float]] = {}
    for r, langs, qlang in zip(ranks, rank_langs, query_langs):
        if len(r) < 2:
            continue
        check_range("rank distance - (relevant - 1)", r.max() - r.min() - (len(r) - 1), 0)
        by_lang.setdefault(qlang, []).append(float(r.max() - r.min()))
        pref.setdefault(qlang, []).append(float(langs[int(np.argmin(r))] == qlang))
    per_lang = {lang: float(np.mean(v)) for lang, v in sorted(by_lang.items())}
    per_pref = {lang: float(np.mean(v)) for lang, v in sorted(pref.items())}
    check_range("same_language_top", list(per_pref.values()), 0.0, 1.0)
    # No query with two relevant candidates (one language, or none shared): n/a, not "no bias".
    return {"rank_distance": float(np.mean(list(per_lang.values()))) if per_lang else None,
            "rank_distance_per_language": per_lang,
            "same_language_top": float(np.mean(list(per_pref.values()))) if per_pref else None,
            "same_language_top_per_language": per_pref}


def ir_per_query(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]],
                 measures: Iterable[str] = DEFAULT_MEASURES) -> dict[str, dict[str, float]]:
    """{measure: {query: value}} over judged queries: the values :func:`ir_metrics` averages
    (ir_measures' iter_calc; a judged query with no retrieved document scores 0, trec_eval -c)."""
    import ir_measures

    parsed = [ir_measures.parse_measure(m) for m in measures]
    per_query = {str(m): {q: 0.0 for q in qrels} for m in parsed}
    for row in ir_measures.iter_calc(parsed, qrels, run):
        per_query[str(row.measure)][row.query_id] = float(row.value)
    for m in parsed:
        if m.NAME in BOUNDED_MEASURES:
            check_range(str(m), list(per_query[str(m)].values()), 0.0, 1.0)
    return per_query


def average_precision(ranks: np.ndarray) -> float:
    """AP of one query from the 1-based ranks of all its relevant items (as :func:`rank_metrics`)."""
    r = np.sort(ranks)
    return float(np.mean(np.arange(1, len(r) + 1) / r))


def bias_per_query(ranks: Sequence[np.ndarray], rank_langs: Sequence[Sequence[str]],
                   query_langs: Sequence[str]) -> list[tuple[str, Optional[float], Optional[float]]]:
    """Per query the values :func:`language_bias` averages: (query language, rank distance, 1.0 if
    its best-ranked relevant candidate is in its language); None for both with fewer than two
    relevant candidates (no distance)."""
    out = []
    for r, langs, qlang in zip(ranks, rank_langs, query_langs):
        if len(r) < 2:
            out.append((qlang, None, None))
        else:
            out.append((qlang, float(r.max() - r.min()), float(langs[int(np.argmin(r))] == qlang)))
    return out


# DPR's SimpleTokenizer: alphanumeric runs and single non-space characters, matched uncased after NFD.
_DPR_TOKENS = regex.compile(r"([\p{L}\p{N}\p{M}]+)|([^\p{Z}\p{C}])",
                            flags=regex.IGNORECASE | regex.UNICODE | regex.MULTILINE)


def _dpr_tokens(text: str) -> list[str]:
    text = unicodedata.normalize("NFD", text)
    return [m.group().lower() for m in _DPR_TOKENS.finditer(text)]


def has_answer(passage: str, answers: Iterable[str]) -> bool:
    """DPR's string match: an answer's token sequence occurs in the passage's token sequence."""
    tokens = _dpr_tokens(passage)
    for answer in answers:
        ans = _dpr_tokens(answer)
        n = len(ans)
        if n and any(tokens[i:i + n] == ans for i in range(len(tokens) - n + 1)):
            return True
    return False


def topk_accuracy(hits: np.ndarray, cutoffs: Sequence[int] = (20, 100)) -> dict[str, float]:
    """hits[q, i] = passage i of query q's ranking contains an answer; accuracy = any hit in top k."""
    out = {f"top{k}": float(np.mean(hits[:, :k].any(axis=1))) for k in cutoffs}
    check_range("top-k accuracy", list(out.values()), 0.0, 1.0)
    return out


def answer_hits(positions: np.ndarray, passages: Sequence[str], answers: Sequence[Sequence[str]],
                depth: Optional[int] = None) -> np.ndarray:
    depth = depth or positions.shape[1]
    hits = np.zeros((len(positions), depth), dtype=bool)
    for q, row in enumerate(positions[:, :depth]):
        for i, p in enumerate(row):
            hits[q, i] = p >= 0 and has_answer(passages[p], answers[q])
    return hits
