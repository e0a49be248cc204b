"""Forward+backward step time: our Megatron-Core embedder vs Hugging Face LlamaModel, one run.

Both sides get the same weights (copied from the Megatron model into HF's layout), the same
bidirectional padding mask, the same mean pooling + L2 norm, and the same InfoNCE loss with
hard negatives. The script first checks that the two produce the same embeddings, then times
``steps`` forward+backward passes of each, interleaved, and prints the median step times and the
ratio (HF time / ours: above 1 means we are faster).

    python tools/bench/bench_step.py                 # tiny preset
    python tools/bench/bench_step.py --size small    # 4 layers, hidden 256
"""

from __future__ import annotations

import argparse
import warnings

import torch
from timing import interleaved_medians

warnings.filterwarnings("ignore")

SIZES = {
    "tiny": {},
    "small": dict(num_layers=4, hidden_size=256, ffn_hidden_size=704, num_attention_heads=8,
                  num_query_groups=4, vocab_size=4096),
}


def _norm_weight(norm, next_linear):
    """A pre-norm's weight: in its own module (local spec) or fused into the next linear (TE)."""
    return norm.weight if hasattr(norm, "weight") else next_linear.layer_norm_weight


def hf_model_from_megatron(model, cfg):
    """A transformers LlamaModel holding the Megatron model's weights (TP=1, PP=1)."""
    from transformers import LlamaConfig, LlamaModel

    heads, groups, d = cfg.num_attention_heads, cfg.kv_heads, cfg.head_dim
    hf = LlamaModel(LlamaConfig(
        vocab_size=model.embedding.word_embeddings.weight.size(0), hidden_size=cfg.hidden_size,
        intermediate_size=cfg.ffn_hidden_size, num_hidden_layers=cfg.num_layers,
        num_attention_heads=heads, num_key_value_heads=groups, rms_norm_eps=cfg.layernorm_epsilon,
        rope_theta=cfg.rotary_base, max_position_embeddings=cfg.max_position_embeddings,
        attention_dropout=0.0, attn_implementation="sdpa"))
    sd = {"embed_tokens.weight": model.embedding.word_embeddings.weight,
          "norm.weight": model.decoder.final_layernorm.weight}
    per_group = heads // groups
    for i, layer in enumerate(model.decoder.layers):
        # Megatron's fused QKV rows are grouped per KV head: [q x per_group, k, v] x groups.
        qkv = layer.self_attention.linear_qkv.weight.view(groups, per_group + 2, d, -1)
        p = f"layers.{i}."
        sd[p + "self_attn.q_proj.weight"] = qkv[:, :per_group].reshape(heads * d, -1)
        sd[p + "self_attn.k_proj.weight"] = qkv[:, per_group].reshape(groups * d, -1)
        sd[p + "self_attn.v_proj.weight"] = qkv[:, per_group + 1].reshape(groups * d, -1)
        sd[p + "self_attn.o_proj.weight"] = layer.self_attention.linear_proj.weight
        gate, up = layer.mlp.linear_fc1.weight.chunk(2, dim=0)
        sd[p + "mlp.gate_proj.weight"], sd[p + "mlp.up_proj.weight"] = gate, up
        sd[p + "mlp.down_proj.weight"] = layer.mlp.linear_fc2.weight
        sd[p + "input_layernorm.weight"] = _norm_weight(layer.input_layernorm,
                                                        layer.self_attention.linear_qkv)
        sd[p + "post_attention_layernorm.weight"] = _norm_weight(layer.pre_mlp_layernorm,
                                                                 layer.mlp.linear_fc1)
    hf.load_state_dict({k: v.detach().clone() for k, v in sd.items()}, strict=True)
    return hf


def hf_embed(hf, ids, mask):
    from megatron_hybridir.model.pooling.tokens import masked_mean

    # 4D boolean mask, True = may attend: transformers uses a prepared 4D mask as given.
    allowed = mask[:, None, None, :].expand(-1, 1, mask.size(1), -1)
    hidden = hf(input_ids=ids, attention_mask=allowed).last_hidden_state
    return torch.nn.functional.normalize(masked_mean(hidden, mask), dim=-1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--queries", type=int, default=16)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    from megatron_hybridir.config import LossConfig, ParallelConfig
    from megatron_hybridir.loss import info_nce
    from megatron_hybridir.model.builder import build_model
    from megatron_hybridir.config.presets import preset
    from megatron_hybridir.runtime.distributed import initialize, shutdown
    from megatron_hybridir.data.synthetic import random_token_batch
    from megatron_hybridir.training.forward_step import split_embeddings

    initialize(ParallelConfig(), seed=0)
    cfg = preset("tiny", max_position_embeddings=max(512, args.seq), **SIZES[args.size])
    ours = build_model(cfg, ParallelConfig())
    hf = hf_model_from_megatron(ours, cfg)
    batch = random_token_batch(num_queries=args.queries, num_negatives=1, seq_length=args.seq,
                               vocab_size=cfg.vocab_size, generator=torch.Generator().manual_seed(0))
    ids, mask = batch.input_ids, batch.attention_mask

    def step(embed):
        q, p, n = split_embeddings(embed(ids, mask), num_queries=args.queries, num_negatives=1)
        loss = info_nce(q, p, n, scale=1.0 / LossConfig().temperature).loss
        loss.backward()
        return loss

    with torch.no_grad():
        diff = (ours(ids, mask) - hf_embed(hf, ids, mask)).abs().max().item()
    print(f"same weights, max |embedding difference| = {diff:.2e}")
    med = interleaved_medians({
        "megatron-hybridir": lambda: step(ours),
        "HF transformers LlamaModel": lambda: step(lambda i, m: hf_embed(hf, i, m))},
        steps=args.steps, warmup=3)
    rows = args.queries * 3
    print(f"size={args.size} batch={rows} sequences x {args.seq} tokens, "
          f"{torch.get_num_threads()} threads, {args.steps} timed steps each (median)")
    for name, t in med.items():
        print(f"  {name:28s} {t * 1000:8.2f} ms/step")
    ratio = med["HF transformers LlamaModel"] / med["megatron-hybridir"]
    print(f"ratio (HF / ours) = {ratio:.2f}x  ({'ours faster' if ratio > 1 else 'HF faster'})")
    shutdown()


if __name__ == "__main__":
    main()
