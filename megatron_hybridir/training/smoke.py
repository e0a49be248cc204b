"""A short real training run of the tiny model on synthetic token pairs (the pre-data smoke job).

Why it exists: before the data pipeline lands, the README's main command must still train for real:
process groups, Megatron DDP, the pipeline schedules, Megatron's optimizer, global-negative InfoNCE.
The pairs are learnable on purpose (a positive shares most of its query's tokens, negatives do not),
so a falling loss and a rising in-batch accuracy show the whole stack learns.

What it does not do: read data, checkpoint or evaluate (the trainer issue owns those).

Run: ``torchrun --nproc-per-node 2 -m megatron_hybridir.training.smoke parallel.tensor_model_parallel_size=2``
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from megatron.core import parallel_state
from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer

from megatron_hybridir.config import RunConfig, load_config
from megatron_hybridir.model.builder import build_model_chunks
from megatron_hybridir.runtime.distributed import initialize, shutdown
from megatron_hybridir.training.engine import forward_backward, wrap_ddp

logger = logging.getLogger(__name__)


def related_pairs(*, num_queries: int, num_negatives: int, seq_length: int, vocab_size: int,
                  generator: torch.Generator) -> dict:
    """Token batch in the engine's layout where each positive is a noisy shuffle of its query.

    Every row is padded to ``seq_length`` (fixed shapes, as pipeline parallelism needs).
    """
    b, k, s = num_queries, num_negatives, seq_length
    base = torch.randint(1, vocab_size, (b, s), generator=generator)
    lengths = torch.randint(s // 2, s + 1, (b * (2 + k),), generator=generator)
    perm = torch.argsort(torch.rand(b, s, generator=generator), dim=1)
    positive = torch.gather(base, 1, perm)
    noise = torch.rand(b, s, generator=generator) < 0.25
    positive = torch.where(noise, torch.randint(1, vocab_size, (b, s), generator=generator), positive)
    negatives = torch.randint(1, vocab_size, (b * k, s), generator=generator)
    ids = torch.cat([base, positive, negatives])
    mask = torch.arange(s)[None, :] < lengths[:, None]
    return {"input_ids": ids.masked_fill(~mask, 0), "attention_mask": mask,
            "num_queries": b, "num_negatives": k}


@dataclass
class SmokeResult:
    losses: list[float] = field(default_factory=list)
    accuracies: list[float] = field(default_factory=list)


def _dp_mean(value: torch.Tensor) -> float:
    value = value.detach().clone()
    dist.all_reduce(value, group=parallel_state.get_data_parallel_group())
    return float(value) / parallel_state.get_data_parallel_world_size()


def run_smoke(config: RunConfig, *, steps: int = 60, global_batch: int = 16, micro_batch: int = 8,
              lr: float = 1e-4) -> SmokeResult:
    """Train ``steps`` optimizer steps; return the per-step loss and accuracy (last stage)."""
    info = initialize(config.parallel, seed=config.seed)
    chunks = build_model_chunks(config.model, config.parallel, precision=config.precision,
                                loss=config.loss)
    model = wrap_ddp(chunks)
    optimizer = get_megatron_optimizer(
        OptimizerConfig(optimizer="adam", lr=lr, weight_decay=0.01, clip_grad=1.0,
                        bf16=config.precision.dtype == "bf16"), model)
    if global_batch % (micro_batch * info.dp_size):
        raise ValueError(f"global batch {global_batch} is not divisible by micro batch "
                         f"{micro_batch} x data-parallel size {info.dp_size}")
    num_micro = global_batch // (micro_batch * info.dp_size)
    # Same generator seed on every rank; each DP rank draws its own slice by skipping the others'.
    generator = torch.Generator().manual_seed(config.seed)
    result = SmokeResult()
    is_last = parallel_state.is_pipeline_last_stage()
    for step in range(steps):
        start = time.perf_counter()
        all_micro = [related_pairs(num_queries=micro_batch,
                                   num_negatives=config.loss.num_hard_negatives,
                                   seq_length=config.seq_length, vocab_size=config.model.vocab_size,
                                   generator=generator)
                     for _ in range(num_micro * info.dp_size)]
        mine = all_micro[info.dp_rank::info.dp_size]
        outputs = forward_backward(model, mine, loss=config.loss)
        update_ok, grad_norm, _ = optimizer.step()
        if is_last:
            loss = _dp_mean(torch.stack([o["loss"] for o in outputs]).mean())
            acc = _dp_mean(torch.stack([o["accuracy"] for o in outputs]).mean())
            result.losses.append(loss)
            result.accuracies.append(acc)
            if parallel_state.get_tensor_model_parallel_rank() == 0 and info.dp_rank == 0 and (
                    step % 10 == 9 or step == 0):
                print(f"step {step + 1:3d}/{steps}  loss {loss:.4f}  in-batch acc@1 {acc:.3f}  "
                      f"grad-norm {grad_norm:.3f}  {time.perf_counter() - start:.2f}s", flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = list(sys.argv[1:] if argv is None else argv)
    path = args.pop(args.index("--config") + 1) if "--config" in args else None
    if path is not None:
        args.remove("--config")
    config = load_config(path, ["model.preset=tiny", "seq_length=16", "loss.temperature=0.05",
                                *args])
    try:
        result = run_smoke(config)
        if result.losses and parallel_state.get_tensor_model_parallel_rank() == 0 \
                and parallel_state.get_data_parallel_rank() == 0:
            w = min(10, len(result.losses))
            mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
            print(f"smoke: mean of first/last {w} steps: loss {mean(result.losses[:w]):.4f} -> "
                  f"{mean(result.losses[-w:]):.4f}, in-batch acc@1 "
                  f"{mean(result.accuracies[:w]):.3f} -> {mean(result.accuracies[-w:]):.3f}",
                  flush=True)
    finally:
        shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
