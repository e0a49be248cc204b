"""One evaluation run: load a benchmark, encode, search, score, write the report.

Why it exists: ``python -m megatron_hybridir.evaluate`` and the quickstart call :func:`evaluate` with
an :class:`EvalConfig`; tests call the same function. The benchmark's entry in the registry
(``benchmarks.py``) says how to load it and which kind it is: retrieval benchmarks (BEIR, NQ,
MIRACL) go through disk shards and FAISS; LAReQA benchmarks (XQuAD-R, MLQA-R) score every
monolingual, cross-lingual and multilingual-pool setting from exact ranks and add the
language-bias measures. Nothing here names a benchmark.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Optional

import numpy as np

from megatron_hybridir.evaluation import instruction as instructions
from megatron_hybridir.evaluation import matryoshka, metrics, report, search
from megatron_hybridir.evaluation.per_query import PerQueryTable
from megatron_hybridir.evaluation.benchmarks import BENCHMARKS, Benchmark
from megatron_hybridir.evaluation.config import EvalConfig
from megatron_hybridir.evaluation.checks import check_config, check_model, check_retrieval_task
from megatron_hybridir.evaluation.encoder import EmbeddingError, Encoder, EncoderConfig, encode_corpus
from megatron_hybridir.evaluation.tasks import LAReQATask, RetrievalTask, lareqa_settings

log = logging.getLogger(__name__)


def _retrieve(config: EvalConfig, encoder: Encoder, task: RetrievalTask, timings: dict,
              keep: Optional[dict] = None) -> tuple[np.ndarray, np.ndarray]:
    """Encode and search; ``keep`` receives the full query embeddings and corpus shards."""
    tick = time.perf_counter()
    queries = encoder.encode_queries(task.query_texts, progress=config.progress)
    timings["encode_queries"] = timings.get("encode_queries", 0) + time.perf_counter() - tick
    tick = time.perf_counter()
    shards = encode_corpus(encoder, task.passage, len(task.corpus_ids),
                           Path(config.cache_dir or Path(config.output) / "cache"),
                           shard_size=config.shard_size, float16=config.float16_shards,
                           progress=config.progress)
    timings["encode_corpus"] = timings.get("encode_corpus", 0) + time.perf_counter() - tick
    if keep is not None:
        keep.update(queries=queries, shards=shards)
    tick = time.perf_counter()
    scores, positions = search.search(queries, shards.shards, min(config.k, shards.size),
                                      search.spec_of(config), shards.dim, shards.size)
    timings["search"] = timings.get("search", 0) + time.perf_counter() - tick
    return scores, positions


def _retrieve_and_score(config: EvalConfig, bench: Benchmark, encoder: Encoder, task: RetrievalTask,
                        timings: dict, per_query: Optional[PerQueryTable] = None,
                        setting: str = "all") -> tuple[dict, Optional[dict]]:
    """The benchmark's metrics, and per Matryoshka dimension when ``encoder.truncate_dim`` asks."""
    check_retrieval_task(config, bench, task, encoder.dim)      # before any encoding
    keep: dict = {}
    scores, positions = _retrieve(config, encoder, task, timings, keep)
    scored = bench.score(config, task, scores, positions)
    if per_query is not None:
        per_query.add_retrieval(bench, config, task, scores, positions, setting)
    per_dim = (matryoshka.score_per_dimension(config, task, keep, bench.score)
               if config.encoder.truncate_dim else None)
    return scored, per_dim


def _evaluate_retrieval(config: EvalConfig, bench: Benchmark, encoder: Encoder, timings: dict,
                        per_query: Optional[PerQueryTable] = None) -> dict:
    if bench.languages is None:
        task = bench.load_task(config)
        scored, per_dim = _retrieve_and_score(config, bench, encoder, task, timings, per_query)
        body = {"dataset": task.name, "metrics": scored,
                "sizes": {"queries": len(task.query_ids), "corpus": len(task.corpus_ids)}}
        if per_dim:
            body["per_dimension"] = per_dim
        return body
    # One task per language (read, encoded and scored in turn); the summary is their mean.
    langs = bench.languages(config)
    # Every language is read and checked before the first is encoded: a missing file or a measure
    # too deep for the last language's corpus must not surface hours into the run. The tasks are
    # dropped and read again below rather than held, since all corpora at once may not fit.
    for lang in langs:
        check_retrieval_task(config, bench, bench.load_task(config, lang), encoder.dim)
    per_language, per_dim = {}, {}
    for lang in langs:
        per_language[lang], dims = _retrieve_and_score(config, bench, encoder,
                                                       bench.load_task(config, lang), timings,
                                                       per_query, lang)
        if dims:
            per_dim[lang] = dims
    keys = next(iter(per_language.values())).keys()
    summary = {key: float(np.mean([v[key] for v in per_language.values()])) for key in keys}
    body = {"dataset": f"{bench.name} ({bench.split(config)})", "metrics": summary,
            "per_language": per_language}
    if per_dim:
        body["per_dimension"] = {d: {key: float(np.mean([per_dim[lang][d][key] for lang in langs]))
                                     for key in keys} for d in per_dim[langs[0]]}
    return body


def _encode_lareqa(task: LAReQATask, encoder: Encoder, candidate_context: bool,
                   progress: bool) -> tuple[dict, dict, dict]:
    """Query and candidate embeddings per language, and each language's first row in the pool."""
    q_emb, c_emb, c_offset = {}, {}, {}
    offset = 0
    for lang in task.languages:
        texts = [f"{s} {c}" if candidate_context else s for _, s, c in task.candidates[lang]]
        try:
            q_emb[lang] = encoder.encode_queries(list(task.questions[lang].values()),
                                                 progress=progress)
            c_emb[lang] = encoder.encode_passages(texts, progress=progress)
        except EmbeddingError as err:
            raise EmbeddingError(f"{task.name} language {lang!r}: {err}") from None
        c_offset[lang] = offset
        offset += len(texts)
    return q_emb, c_emb, c_offset


def _mean(values) -> Optional[float]:
    """Mean over the values that exist; None (n/a) when none does — never 0.0 for "nothing"."""
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def _lareqa_summary(langs: list[str], settings: dict, pool_rows: list[dict], bias: dict) -> dict:
    mono = [settings[f"{a}->{a}"] for a in langs]
    cross = [settings[f"{a}->{b}"] for a in langs for b in langs if a != b]
    multi = len(langs) > 1          # one language: the pool is the X->X setting again
    return {"mono_mAP": _mean(s["mAP"] for s in mono),
            "cross_mAP": _mean(s["mAP"] for s in cross),
            "multi_mAP": _mean(r["mAP"] for r in pool_rows) if multi else None,
            "mono_R@1": _mean(s["R@1"] for s in mono),
            "cross_R@1": _mean(s["R@1"] for s in cross),
            "multi_R@10": _mean(r["R@10"] for r in pool_rows) if multi else None,
            "rank_distance": bias["rank_distance"],
            "same_language_top": bias["same_language_top"]}


def _lareqa_notes(langs: list[str], settings: dict) -> list[str]:
    """Why values are n/a, for results.json / results.md and the log."""
    notes = []
    if len(langs) == 1:
        notes.append(f"one language ({langs[0]}): cross-lingual, multilingual-pool and language-bias "
                     f"measures are n/a")
    empty = [name for name, s in settings.items() if s["queries"] == 0]
    if empty:
        notes.append(f"{len(empty)} setting(s) share no question and are n/a, left out of every "
                     f"mean: {', '.join(empty[:10])}{' ...' if len(empty) > 10 else ''}")
    for note in notes:
        log.warning(note)
    return notes


def evaluate_lareqa(task: LAReQATask, encoder: Encoder, *, candidate_context: bool = False,
                    progress: bool = True, timings: Optional[dict] = None,
                    per_query: Optional[PerQueryTable] = None, run_depth: int = 100) -> dict:
    """Every X->Y setting, the multilingual pool, and the language-bias measures.

    A setting X->Y is scored over the questions of X that have an answer in Y; a setting with no
    such question (possible in a partially parallel benchmark, MLQA-R) is n/a: its values are None
    (null in results.json, "n/a" in results.md) and it enters no mean. With one language the
    cross-lingual, pool and bias measures are n/a. Which question ids must align across languages
    is the loader's rule (``loaders.load_lareqa``, ``parallel``).
    """
    timings = {} if timings is None else timings
    langs = task.languages
    tick = time.perf_counter()
    q_emb, c_emb, c_offset = _encode_lareqa(task, encoder, candidate_context, progress)
    timings["encode"] = time.perf_counter() - tick
    tick = time.perf_counter()
    cand_index = {lang: {cid: i for i, (cid, _, _) in enumerate(task.candidates[lang])} for lang in langs}
    grid: list[list[Optional[float]]] = [[None] * len(langs) for _ in langs]
    settings = {}
    for a, b in lareqa_settings(task):
        qids = [q for q in task.questions[a] if q in task.answer[b]]
        rows = [i for i, q in enumerate(task.questions[a]) if q in task.answer[b]]
        relevant = [[cand_index[b][task.answer[b][q]]] for q in qids]
        ranks = metrics.relevant_ranks(q_emb[a][rows], c_emb[b], relevant,
                                       candidate_ids=[cid for cid, _, _ in task.candidates[b]])
        if per_query is not None:     # per query, and the pool's top run_depth as a TREC run
            per_query.add_ranks(f"{a}->{b}", qids, ranks)
        settings[f"{a}->{b}"] = dict(metrics.rank_metrics(ranks), queries=len(qids))
        grid[langs.index(a)][langs.index(b)] = settings[f"{a}->{b}"]["mAP"]
    pool = np.concatenate([c_emb[lang] for lang in langs])
    pool_ids = [cid for lang in langs for cid, _, _ in task.candidates[lang]]
    pool_rows, pool_langs, query_langs = [], [], []
    per_language = {}
    multi = len(langs) > 1
    for a in langs:
        relevant, rel_langs = [], []
        for q in task.questions[a]:
            present = [b for b in langs if q in task.answer[b]]
            relevant.append([c_offset[b] + cand_index[b][task.answer[b][q]] for b in present])
            rel_langs.append(present)
        ranks = metrics.relevant_ranks(q_emb[a], pool, relevant, candidate_ids=pool_ids)
        pool_rows.append(metrics.rank_metrics(ranks))
        if per_query is not None and multi:       # one language: pool and bias are n/a
            per_query.add_ranks(f"pool:{a}", list(task.questions[a]), ranks)
            per_query.add_bias([(a, q) for q in task.questions[a]], ranks, rel_langs, [a] * len(ranks))
        if per_query is not None:
            per_query.add_pool_run([f"{a}:{q}" for q in task.questions[a]], q_emb[a], pool, pool_ids,
                                   run_depth)
        pool_langs += rel_langs
        query_langs += [a] * len(ranks)
        per_language[a] = {"mono_mAP": settings[f"{a}->{a}"]["mAP"],
                           "cross_mAP": _mean(settings[f"{a}->{b}"]["mAP"] for b in langs if b != a),
                           "multi_mAP": pool_rows[-1]["mAP"] if multi else None}
        per_language[a]["_ranks"] = ranks
    all_ranks = [r for a in langs for r in per_language[a].pop("_ranks")]
    bias = metrics.language_bias(all_ranks, pool_langs, query_langs)
    for a in langs:
        per_language[a]["rank_distance"] = bias["rank_distance_per_language"].get(a)
        per_language[a]["same_language_top"] = bias["same_language_top_per_language"].get(a)
    timings["score"] = time.perf_counter() - tick
    n = len(langs)
    summary = _lareqa_summary(langs, settings, pool_rows, bias)
    body = {"dataset": task.name, "metrics": summary, "settings": settings,
            "setting_counts": {"monolingual": n, "cross_lingual": n * (n - 1),
                               "multilingual_pool": 1 if multi else 0},
            "matrix": {"languages": langs, "map": grid,
                       "pool": [r["mAP"] if multi else None for r in pool_rows]},
            "per_language": per_language}
    notes = _lareqa_notes(langs, settings)
    if notes:
        body["notes"] = notes
    return body


def _evaluate_lareqa_benchmark(config: EvalConfig, bench: Benchmark, encoder: Encoder,
                               timings: dict, per_query: Optional[PerQueryTable] = None) -> dict:
    tick = time.perf_counter()
    task = bench.load_task(config)
    timings["load_data"] = time.perf_counter() - tick
    memo = matryoshka.MemoEncoder(encoder)      # encoded once for every dimension
    body = evaluate_lareqa(task, memo, candidate_context=config.candidate_context,
                           progress=config.progress, timings=timings, per_query=per_query,
                           run_depth=config.k)
    if config.encoder.truncate_dim:
        body["per_dimension"] = {
            str(d): evaluate_lareqa(task, matryoshka.TruncatedEncoder(memo, d),
                                    candidate_context=config.candidate_context,
                                    progress=False)["metrics"]
            for d in matryoshka.check_dims(config.encoder.truncate_dim, encoder.dim)}
    return body


# Benchmark kind -> how it is run (benchmarks.KINDS lists the same names).
_KINDS = {"retrieval": _evaluate_retrieval, "lareqa": _evaluate_lareqa_benchmark}


def evaluate(config: EvalConfig) -> dict:
    """Run one evaluation and write results.json / results.md / plots into ``config.output``."""
    check_config(config)
    instruction = instructions.resolve(config)
    started = time.perf_counter()
    timings: dict[str, float] = {}
    tick = time.perf_counter()
    encoder = Encoder(config.encoder if instruction is None else
                      replace(config.encoder, query_prompt=instruction["query_prompt"]))
    timings["load_model"] = time.perf_counter() - tick
    bench = BENCHMARKS[config.benchmark]
    table = PerQueryTable(Path(config.output).name)
    try:
        check_model(config, encoder)          # before anything is read or encoded
        body = _KINDS[bench.kind](config, bench, encoder, timings, table)
    finally:
        encoder.close()
    body["per_query"] = table.write(Path(config.output))     # per_query.jsonl, run*.trec
    timings["total"] = time.perf_counter() - started
    results = {"model": config.encoder.model, "benchmark": config.benchmark, **body,
               "config": asdict(config), "versions": report.library_versions(),
               "timings": timings, "instruction": instruction,
               "encoder": {"dtype": encoder.dtype, "devices": encoder.devices,
                           "query_prompt": encoder.query_prompt,
                           "passage_prompt": encoder.passage_prompt}}
    report.write_results(results, Path(config.output), plots=config.plots)
    return results
