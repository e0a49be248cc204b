"""GradCache overhead: step time of the tiny CPU config with and without GradCache, one run.

Both sides run the same global batch split into the same micro-batches through Megatron's
schedule; without GradCache negatives span one micro-batch, with it the whole batch. GradCache
costs one extra forward pass per micro-batch, so about 1.3x is expected.

    python tools/bench/bench_gradcache.py [--micro 4] [--queries 8] [--seq 64] [--steps 20]
"""

from __future__ import annotations

import argparse
import warnings

import torch
from timing import interleaved_medians

warnings.filterwarnings("ignore")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--micro", type=int, default=4, help="micro-batches per step")
    parser.add_argument("--queries", type=int, default=8, help="queries per micro-batch")
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()

    from megatron_hybridir.config import LossConfig, ParallelConfig
    from megatron_hybridir.model.builder import build_model
    from megatron_hybridir.config.presets import preset
    from megatron_hybridir.runtime.distributed import initialize, shutdown
    from megatron_hybridir.training.engine import forward_backward, wrap_ddp
    from megatron_hybridir.data.synthetic import random_token_batch
    from megatron_hybridir.training.gradcache import gradcache_forward_backward

    initialize(ParallelConfig(), seed=0)
    loss = LossConfig(temperature=0.05, num_hard_negatives=1)
    model = wrap_ddp([build_model(preset("tiny"), ParallelConfig(), loss=loss)])
    g = torch.Generator().manual_seed(0)
    micro = [random_token_batch(num_queries=args.queries, num_negatives=1, seq_length=args.seq,
                                vocab_size=250, generator=g) for _ in range(args.micro)]
    med = interleaved_medians({
        "plain (per-micro-batch negatives)": lambda: forward_backward(model, micro, loss=loss),
        "GradCache (global negatives)": lambda: gradcache_forward_backward(model, micro,
                                                                           loss=loss)},
        steps=args.steps)
    print(f"tiny preset, {args.micro} micro-batches x {args.queries} queries (+1 positive, "
          f"+1 negative) x {args.seq} tokens, median of {args.steps} steps")
    for name, t in med.items():
        print(f"  {name:36s} {t * 1000:8.1f} ms/step  {1 / t:6.2f} steps/s")
    ratio = med["GradCache (global negatives)"] / med["plain (per-micro-batch negatives)"]
    print(f"GradCache overhead = {ratio:.2f}x step time (negatives per query: "
          f"{2 * args.queries - 1} -> {2 * args.queries * args.micro - 1})")
    shutdown()


if __name__ == "__main__":
    main()
