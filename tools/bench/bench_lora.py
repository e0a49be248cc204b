"""LoRA vs full fine-tuning on the same model, one run: step time (interleaved), memory, trainable
parameters; then the 30B LoRA dry-run memory table.

Both sides are the real training step: Megatron DDP + Megatron's Adam optimizer, one global batch
through ``training.engine.forward_backward`` and ``optimizer.step()``, same weights (the LoRA model
loads the full model's weights as its frozen base), same batch. Measured:

- median step time of each, steps alternating between them (``timing.interleaved_medians``);
- training-state memory read off the live tensors: parameters, DDP gradient buffers and optimizer
  state (Adam moments, and fp32 main copies where the optimizer keeps them);
- peak RSS of a fresh child process per variant running the same steps (CPU; on a GPU the child
  reports ``torch.cuda.max_memory_allocated``);
- the trainable-parameter ratio.

    python tools/bench/bench_lora.py                 # small: 4 layers, hidden 256
    python tools/bench/bench_lora.py --size medium   # 4 layers, hidden 512
    python tools/bench/bench_lora.py --size 7b-width --seq 512   # on a GPU (docs/gpu-results.md)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import torch
from timing import interleaved_medians

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parents[2]
SIZES = {
    "small": dict(num_layers=4, hidden_size=256, ffn_hidden_size=704, num_attention_heads=8,
                  num_query_groups=4, vocab_size=4096),
    "medium": dict(num_layers=4, hidden_size=512, ffn_hidden_size=1408, num_attention_heads=8,
                   num_query_groups=4, vocab_size=4096),
    # Mistral-7B's layer, 4 of them (about 1.0 B parameters): for GPU runs (docs/gpu-results.md).
    "7b-width": dict(num_layers=4, hidden_size=4096, ffn_hidden_size=14336, num_attention_heads=32,
                     num_query_groups=8, vocab_size=32000),
}
# Model fields every variant shares, set from the command line (--te).
COMMON: dict = {}


def build(size: str, rank: int, lora: bool, base_state=None):
    """(DDP model, optimizer, raw chunk) for the full or the LoRA variant."""
    from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer
    from megatron_hybridir.config import LoraConfig, ParallelConfig
    from megatron_hybridir.model.builder import build_model
    from megatron_hybridir.config.presets import preset
    from megatron_hybridir.training.engine import wrap_ddp

    torch.manual_seed(0)
    cfg = preset("tiny", **SIZES[size], **COMMON,
                 lora=LoraConfig(rank=rank, alpha=2.0 * rank) if lora else None)
    chunk = build_model(cfg, ParallelConfig())
    if base_state is not None:
        chunk.load_state_dict(base_state, strict=False)
    model = wrap_ddp([chunk])
    optimizer = get_megatron_optimizer(OptimizerConfig(optimizer="adam", lr=1e-4), model)
    return model, optimizer, chunk


def state_bytes(model, optimizer, chunk) -> dict:
    """Bytes of parameters, DDP gradient buffers and optimizer state, from the tensors."""
    params = sum(p.numel() * p.element_size() for p in chunk.parameters())
    grads = sum(b.grad_data.numel() * b.grad_data.element_size() for m in model for b in m.buffers)
    optim = 0
    for leaf in getattr(optimizer, "chained_optimizers", [optimizer]):
        for state in leaf.optimizer.state.values():
            optim += sum(t.numel() * t.element_size() for t in state.values()
                         if isinstance(t, torch.Tensor) and t.dim() > 0)
    return {"parameters": params, "gradients": grads, "optimizer": optim}


def make_step(model, optimizer, batch):
    from megatron_hybridir.config import LossConfig
    from megatron_hybridir.training.engine import forward_backward

    def step():
        forward_backward(model, [batch], loss=LossConfig(temperature=0.05))
        optimizer.step()
    return step


def make_batch(size: str, queries: int, seq: int):
    from megatron_hybridir.data.synthetic import random_token_batch

    return random_token_batch(num_queries=queries, num_negatives=1, seq_length=seq,
                              vocab_size=SIZES[size]["vocab_size"],
                              generator=torch.Generator().manual_seed(0))


def _proc_status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def child(args) -> None:
    """One variant in a fresh process: its peak memory over building + the same steps, above the
    process's resident memory before the model was built (Linux: the high-water mark is reset
    through /proc/self/clear_refs, so import-time peaks do not mask it)."""
    from megatron_hybridir.config import ParallelConfig
    from megatron_hybridir.runtime.distributed import initialize, shutdown

    initialize(ParallelConfig(), seed=0)
    # Warm the code paths (lazy library loads, allocator pools) on a throwaway 1-layer model, so
    # that the measured peak is this variant's tensors and not the runtime's first use.
    warm = dict(SIZES[args.size], num_layers=1)
    SIZES["_warm"] = warm
    w_model, w_opt, _ = build("_warm", args.rank, args.child == "lora")
    make_step(w_model, w_opt, make_batch("_warm", args.queries, args.seq))()
    del w_model, w_opt
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    else:
        Path("/proc/self/clear_refs").write_text("5")
    before = _proc_status_kib("VmRSS") * 1024
    model, optimizer, _ = build(args.size, args.rank, args.child == "lora")
    step = make_step(model, optimizer, make_batch(args.size, args.queries, args.seq))
    for _ in range(3):
        step()
    peak = (torch.cuda.max_memory_allocated() if torch.cuda.is_available()
            else _proc_status_kib("VmHWM") * 1024 - before)
    print(json.dumps({"peak_bytes": peak}))
    shutdown()


def peak_of(args, variant: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, __file__, "--child", variant, "--size", args.size,
                          "--rank", str(args.rank), "--queries", str(args.queries), "--seq",
                          str(args.seq), *(["--te"] if args.te else [])],
                         env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def dry_run_table() -> None:
    import dataclasses

    from megatron_hybridir.config import load_config
    from megatron_hybridir.training.dry_run import estimate, format_estimate

    lora = load_config(ROOT / "examples" / "retriever_30b_lora.yaml")
    print("\n30B LoRA recipe (examples/retriever_30b_lora.yaml), --dry-run --world-size 8:")
    print("  " + format_estimate(estimate(lora, world_size=8)).replace("\n", "\n  "))
    full = dataclasses.replace(lora, model=dataclasses.replace(lora.model, lora=None),
                               checkpoint=dataclasses.replace(lora.checkpoint, init_from=None))
    e = estimate(full, world_size=8)
    print(f"full fine-tuning of the same model on the same 8 GPUs: {e['memory_total_gib']:.1f} GiB "
          f"per GPU ({e['memory_static_gib']:.1f} weights+grads+optimizer), "
          f"{'fits' if e['memory_total_gib'] < 80 else 'does NOT fit'} 80 GB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--queries", type=int, default=8)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--te", action="store_true",
                        help="Transformer Engine layers (model.use_transformer_engine; GPU)")
    parser.add_argument("--child", choices=["full", "lora"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    COMMON["use_transformer_engine"] = args.te
    if args.child:
        return child(args)

    from megatron_hybridir.config import ParallelConfig
    from megatron_hybridir.runtime.distributed import initialize, shutdown

    initialize(ParallelConfig(), seed=0)
    full = build(args.size, args.rank, lora=False)
    lora = build(args.size, args.rank, lora=True, base_state=full[2].state_dict())
    batch = make_batch(args.size, args.queries, args.seq)
    med = interleaved_medians({"full": make_step(full[0], full[1], batch),
                               "lora": make_step(lora[0], lora[1], batch)}, steps=args.steps, warmup=2)
    trainable = sum(p.numel() for p in lora[2].parameters() if p.requires_grad)
    total = sum(p.numel() for p in lora[2].parameters())
    print(f"size={args.size} ({SIZES[args.size]}), LoRA rank {args.rank} on qkv/proj/fc1/fc2, batch "
          f"{args.queries * 3} sequences x {args.seq} tokens, {torch.get_num_threads()} threads, "
          f"{args.steps} interleaved steps each (median)")
    print(f"trainable parameters: LoRA {trainable:,} of {total:,} = {trainable / total:.2%} "
          f"(full fine-tuning: 100%)")
    print(f"step time: full {med['full'] * 1e3:.1f} ms, LoRA {med['lora'] * 1e3:.1f} ms, "
          f"ratio full / LoRA = {med['full'] / med['lora']:.2f}x")
    states = {name: state_bytes(*v) for name, v in (("full", full), ("lora", lora))}
    for name, s in states.items():
        print(f"training state {name:4s}: params {s['parameters'] / 2**20:7.1f} MiB, grad buffers "
              f"{s['gradients'] / 2**20:7.1f} MiB, optimizer {s['optimizer'] / 2**20:7.1f} MiB, "
              f"total {sum(s.values()) / 2**20:7.1f} MiB")
    print(f"training state ratio full / LoRA = "
          f"{sum(states['full'].values()) / sum(states['lora'].values()):.2f}x")
    shutdown()
    peaks = {v: peak_of(args, v) for v in ("full", "lora")}
    what = ("max GPU memory allocated" if torch.cuda.is_available() else
            "peak RSS above the runtime's (fresh process per variant: build + 3 steps)")
    print(f"{what}: full {peaks['full']['peak_bytes'] / 2**20:.1f} MiB, LoRA "
          f"{peaks['lora']['peak_bytes'] / 2**20:.1f} MiB, ratio full / LoRA = "
          f"{peaks['full']['peak_bytes'] / peaks['lora']['peak_bytes']:.2f}x")
    dry_run_table()


if __name__ == "__main__":
    main()
