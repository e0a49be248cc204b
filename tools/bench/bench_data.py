"""Data pipeline throughput and memory, measured in one run.

(a) pairs/s: our sampler + collator reading the Megatron indexed datasets, vs a straightforward
    ``datasets`` + ``torch.utils.data.DataLoader`` pipeline over the same corpus, tokenized once with
    ``Dataset.map`` beforehand (so both sides only pick, look up and pad tokens). Ratio printed.
(b) peak RSS of iterating the hybrid sampler over 10,000,000 synthetic items for one epoch of the
    parallel stream (in a fresh subprocess, so nothing else is counted).

    python tools/bench/bench_data.py [--items 20000] [--big-items 10000000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore")
LANGS = ["en", "de", "fr", "zh"]


def write_corpus(path: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(2000)]
    with path.open("w") as f:
        for i in range(n):
            text = lambda k: " ".join(rng.choice(words, k))  # noqa: E731
            f.write(json.dumps({"id": str(i), "query": {l: text(12) for l in LANGS},
                                "positive": {l: text(60) for l in LANGS},
                                "negatives": [{l: text(60) for l in LANGS}]}) + "\n")


def train_tokenizer(folder: Path, corpus: Path) -> str:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train([str(corpus)], trainers.WordLevelTrainer(special_tokens=["<pad>", "<unk>", "</s>"]))
    folder.mkdir(exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    return str(folder)


def ours(out: str, batches: int, batch: int) -> float:
    from megatron_hybridir.data.dataset import Collator, TokenizedDataset
    from megatron_hybridir.data.sampler import SamplerConfig

    ds = TokenizedDataset(out)
    sampler = ds.sampler(SamplerConfig(global_batch_size=batch, seed=0))
    collate = Collator(ds, num_negatives=1)
    start = time.perf_counter()
    for step in range(batches):
        collate(sampler.global_batch(step))
    return batches * batch / (time.perf_counter() - start)


def peer(corpus: Path, tokenizer: str, batches: int, batch: int) -> float:
    """The straightforward pipeline: datasets (pre-tokenized with map) + DataLoader + pad."""
    import torch
    from datasets import load_dataset
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(f"{tokenizer}/tokenizer.json")
    ds = load_dataset("json", data_files=str(corpus), split="train")

    def encode(rec):
        out = {}
        for field, prompt in (("query", "Query: "), ("positive", "Passage: ")):
            for lang in LANGS:
                out[f"{field}_{lang}"] = tok.encode(prompt + rec[field][lang]).ids + [2]
        for lang in LANGS:
            out[f"neg_{lang}"] = tok.encode("Passage: " + rec["negatives"][0][lang]).ids + [2]
        return out

    ds = ds.map(encode, remove_columns=ds.column_names, num_proc=1).with_format("numpy")
    rng = np.random.default_rng(0)

    def collate(records):
        q_lang = LANGS[rng.integers(len(LANGS))]
        p_lang = q_lang if rng.random() < 0.5 else LANGS[(LANGS.index(q_lang) + 1) % len(LANGS)]
        seqs = ([r[f"query_{q_lang}"] for r in records] + [r[f"positive_{p_lang}"] for r in records]
                + [r[f"neg_{p_lang}"] for r in records])
        longest = -(-max(len(s) for s in seqs) // 8) * 8
        ids = torch.zeros(len(seqs), longest, dtype=torch.long)
        mask = torch.zeros(len(seqs), longest, dtype=torch.bool)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.from_numpy(s.astype(np.int64))
            mask[i, : len(s)] = True
        return ids, mask

    loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, collate_fn=collate,
                                         num_workers=0, drop_last=True)
    start = time.perf_counter()
    for n, _ in enumerate(loader):
        if n + 1 == batches:
            break
    return batches * batch / (time.perf_counter() - start)


BIG = """
import resource, time, numpy as np
from megatron_hybridir.data.sampler import HybridSampler, SamplerConfig
n, b = {n}, 2000
s = HybridSampler(SamplerConfig(global_batch_size=b, seed=0), num_languages=4,
                  parallel_masks=np.full(n, 15, dtype=np.uint64))
start = time.perf_counter()
seen = 0
for step in range(n // b):
    seen += len(s.global_batch(step).items)
print(seen, time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20000)
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--big-items", type=int, default=10_000_000)
    args = parser.parse_args()
    from megatron_hybridir.data.preprocess import PreprocessConfig, preprocess

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        corpus = tmp / "corpus.jsonl"
        write_corpus(corpus, args.items)
        tokenizer = train_tokenizer(tmp / "tok", corpus)
        start = time.perf_counter()
        preprocess(PreprocessConfig(sources=[str(corpus)], languages=LANGS, tokenizer=tokenizer,
                                    output=str(tmp / "out"), workers=2), progress=False)
        print(f"preprocess: {args.items} items x {len(LANGS)} languages in "
              f"{time.perf_counter() - start:.1f}s (2 workers)")
        a = ours(str(tmp / "out"), args.batches, args.batch)
        b = peer(corpus, tokenizer, args.batches, args.batch)
    print(f"(a) pairs/s  megatron-hybridir sampler+collator: {a:,.0f}   "
          f"datasets+DataLoader: {b:,.0f}   ratio {a / b:.2f}x")
    out = subprocess.run([sys.executable, "-c", BIG.format(n=args.big_items)], capture_output=True,
                         text=True, check=True).stdout.split()
    print(f"(b) sampler over {int(out[0]):,} items (one epoch, batch 2000): {float(out[1]):.1f}s, "
          f"peak RSS {float(out[2]):,.0f} MB")


if __name__ == "__main__":
    main()
