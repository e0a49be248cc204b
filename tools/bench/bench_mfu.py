"""Training-step TFLOP/s and MFU of a 7B-width layer stack: ours vs Hugging Face, one run.

Ours is the trainer's own step: the model, Megatron DDP and Megatron optimizer of
``trainer.build_training``, forward-backward through Megatron's schedule, optimizer step. The
peer is how sentence-transformers / Tevatron train the same model: transformers' LlamaModel (the
Mistral-7B layer at 7B width) with fp32 weights under ``torch.autocast`` bf16 and fused AdamW.
Both start from the same weights and see the same batch and InfoNCE loss. FLOPs come from
``training/flops.py`` (full bidirectional attention, no LM head; the same count for both), MFU
against the GPU's dense bf16 peak (also for fp8, so the figures compare). Steps alternate
between the two (``timing.py``, which waits for the GPU); medians are printed, then the ratio.

    python tools/bench/bench_mfu.py --size 7b-width --layers 4 --dtype bf16                # GPU
    python tools/bench/bench_mfu.py --size 7b-width --layers 4 --dtype bf16 --fp8 hybrid   # + TE
    python tools/bench/bench_mfu.py                         # tiny, fp32, on CPU: MFU n/a
"""

from __future__ import annotations

import argparse
import platform
import warnings

import torch
from bench_step import hf_embed, hf_model_from_megatron
from timing import interleaved_medians

warnings.filterwarnings("ignore")

SIZES = {
    "tiny": ["model.preset=tiny"],
    "small": ["model.preset=tiny", "model.num_layers=4", "model.hidden_size=256",
              "model.ffn_hidden_size=704", "model.num_attention_heads=8",
              "model.num_query_groups=4", "model.vocab_size=4096"],
    # Mistral-7B's layer (hidden 4096, SwiGLU 14336, 32 heads / 8 KV groups, vocab 32000).
    "7b-width": ["model.preset=mistral-7b"],
}


def run_config(args):
    from megatron_hybridir.config import load_config

    overrides = [*SIZES[args.size], "model.attention=bidirectional",
                 f"precision.dtype={args.dtype}", f"seq_length={args.seq}",
                 f"data.global_batch_size={args.queries}", f"data.micro_batch_size={args.queries}",
                 "loss.num_hard_negatives=1", f"model.recompute={args.recompute}",
                 f"model.use_transformer_engine={str(args.te or bool(args.fp8)).lower()}"]
    if args.layers:
        overrides.append(f"model.num_layers={args.layers}")
    if args.fp8:
        overrides.append(f"precision.fp8={args.fp8}")
    return load_config(None, overrides)


def library_versions() -> str:
    try:
        import transformer_engine
        te = transformer_engine.__version__
    except Exception:
        te = "absent"
    import megatron.core
    import transformers
    return (f"torch {torch.__version__}, megatron-core {megatron.core.__version__}, "
            f"transformer-engine {te}, transformers {transformers.__version__}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--layers", type=int, default=0, help="layers (0: the preset's)")
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--fp8", choices=["hybrid", "e4m3"], default=None,
                        help="ours only, through Transformer Engine (the peer stays bf16)")
    parser.add_argument("--te", action="store_true", help="Transformer Engine layers for ours")
    parser.add_argument("--recompute", choices=["none", "selective", "full"], default="none")
    parser.add_argument("--queries", type=int, default=8, help="queries per step (+1 positive, "
                                                              "+1 hard negative each)")
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()

    from megatron_hybridir.config import validate
    from megatron_hybridir.loss import info_nce
    from megatron_hybridir.model.layer_specs import transformer_engine_available
    from megatron_hybridir.model.unwrap import unwrap
    from megatron_hybridir.runtime.distributed import (
        compute_device, initialize, shutdown, to_compute_device)
    from megatron_hybridir.training.engine import forward_backward
    from megatron_hybridir.training.flops import peak_tflops, real_token_flops
    from megatron_hybridir.training.forward_step import split_embeddings
    from megatron_hybridir.training.trainer import BatchSource, build_training

    config = run_config(args)
    initialize(config.parallel, seed=config.seed)
    validate(config, world_size=1)
    device = compute_device()
    model, optimizer, _ = build_training(config)
    micro = BatchSource(config, dp_rank=0, dp_size=1).micro_batches(0)
    batch = to_compute_device(micro[0])
    ids, mask = batch.input_ids, batch.attention_mask

    hf = hf_model_from_megatron(unwrap(model[0]), config.model).to(device)   # fp32 weights
    hf_optimizer = torch.optim.AdamW(hf.parameters(), lr=config.optim.lr,
                                     weight_decay=config.optim.weight_decay,
                                     fused=device.type == "cuda")
    autocast = dict(device_type=device.type, dtype=torch.bfloat16, enabled=args.dtype == "bf16")
    scale = 1.0 / config.loss.temperature

    def hf_embeddings():
        with torch.autocast(**autocast):
            return hf_embed(hf, ids, mask).float()

    def ours_step():
        forward_backward(model, micro, loss=config.loss)
        optimizer.step()

    def hf_step():
        hf_optimizer.zero_grad(set_to_none=True)
        q, p, n = split_embeddings(hf_embeddings(), num_queries=args.queries, num_negatives=1)
        info_nce(q, p, n, scale=scale).loss.backward()
        torch.nn.utils.clip_grad_norm_(hf.parameters(), config.optim.clip_grad)
        hf_optimizer.step()

    with torch.no_grad():
        diff = (unwrap(model[0])(ids, mask).float() - hf_embeddings()).abs().max().item()
    print(f"same weights, max |embedding difference| before training = {diff:.2e} ({args.dtype})")
    ours_name = "megatron-hybridir" + (f" ({args.fp8} fp8)" if args.fp8 else "")
    peer_name = "HF transformers LlamaModel + autocast + AdamW"
    med = interleaved_medians({ours_name: ours_step, peer_name: hf_step}, steps=args.steps,
                              warmup=3)

    rows = args.queries * 3
    # Real tokens only (each row at its own length): padding is not useful work for either side.
    lengths = micro[0].row_lengths().tolist()
    flops = real_token_flops(config.model, row_lengths=lengths, gradcache=False)
    padding = 1.0 - sum(lengths) / micro[0].input_ids.numel()
    name = torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "CPU"
    peak = peak_tflops(name) if device.type == "cuda" else None
    layers = config.model.num_layers
    uses_te = config.model.use_transformer_engine and transformer_engine_available()
    print(f"device: {name}; {library_versions()}")
    print(f"{args.size}: {layers} layers, hidden {config.model.hidden_size}, ffn "
          f"{config.model.ffn_hidden_size}, {rows} sequences x {args.seq} tokens per step, "
          f"{flops / 1e12:.2f} TFLOP per step on real tokens (padding {padding:.0%}), "
          f"{args.steps} timed steps each (median); "
          f"ours: {'Transformer Engine' if uses_te else 'local'} "
          f"layers, recompute {args.recompute}")
    print("| implementation | precision | ms/step | TFLOP/s | MFU (dense bf16 peak) |")
    print("|---|---|---|---|---|")
    for impl, seconds in med.items():
        precision = args.fp8 + " fp8" if (args.fp8 and impl == ours_name) else args.dtype
        tflops = flops / seconds / 1e12
        mfu = f"{tflops / peak:.1%}" if peak else f"n/a (no peak for {name})"
        print(f"| {impl} | {precision} | {seconds * 1000:.1f} | {tflops:.2f} | {mfu} |")
    ratio = med[peer_name] / med[ours_name]
    print(f"ratio (peer step time / ours) = {ratio:.2f}x  "
          f"({'ours faster' if ratio > 1 else 'peer faster'})")
    shutdown()


if __name__ == "__main__":
    main()
