"""``--dry-run``: resolve a config without GPUs and print layout, size, memory and FLOPs per step.

Why it exists: a 30B recipe should be checked on a laptop before it queues for a day. Nothing here
touches CUDA or process groups; the numbers are estimates with their formulas stated:

- parameters: exact count (``model.builder.count_parameters``), split over TP x PP;
- memory per GPU: weights (2 B/param in bf16, 4 in fp32) + fp32 gradients (4 B) + Adam master
  weights and two moments (12 B, divided by DP with the distributed optimizer), + activations
  ~ s·b·h·(34 + 5·a·s/h) bytes per layer and micro-batch (Korthikanti et al., 2022), divided by TP
  with sequence parallelism, times the layers of one stage and the micro-batches in flight (PP);
- FLOPs per step from ``training.flops``, every row at ``seq_length`` (an upper bound: the data's
  lengths are unknown here; training logs count real tokens and the padding fraction);
- where the weights come from (``config/initial_weights.describe``);
- LoRA (``model.lora``): the frozen base costs its weights only; adapters (and the head, if it
  trains) add weights, fp32 gradients and Adam state, the only tensors in the optimizer. Activations
  are as for full training (backward still runs through every layer to reach the adapters).
"""

from __future__ import annotations

from megatron_hybridir.config import RunConfig, validate
from megatron_hybridir.config.initial_weights import describe as describe_weights
from megatron_hybridir.model.builder import count_parameters
from megatron_hybridir.training.flops import training_flops


def estimate(config: RunConfig, *, world_size: int) -> dict:
    validate(config, world_size=world_size)
    m, par, data = config.model, config.parallel, config.data
    tp, pp = par.tensor_model_parallel_size, par.pipeline_model_parallel_size
    dp = world_size // (tp * pp)
    params = count_parameters(m)
    per_gpu = params / (tp * pp)
    weight_bytes = 2 if config.precision.dtype in ("bf16", "fp16") else 4
    optim = 12 / (dp if config.optim.use_distributed_optimizer else 1)
    static = per_gpu * (weight_bytes + 4 + optim)
    lora = None
    if m.lora is not None:
        lora = lora_memory(config, tp=tp, pp=pp, weight_bytes=weight_bytes, optim=optim)
        static = lora["static_bytes"]
    rows = data.micro_batch_size * (2 + config.loss.num_hard_negatives)
    s, h, a = config.seq_length, m.hidden_size, m.num_attention_heads
    act_layer = s * rows * h * (34 + 5 * a * s / h) / (tp if par.sequence_parallel else 1)
    in_flight = min(pp, data.global_batch_size // (data.micro_batch_size * dp))
    activations = act_layer * (m.num_layers / pp) * max(in_flight, 1)
    sequences = data.global_batch_size * (2 + config.loss.num_hard_negatives)
    flops = training_flops(m, sequences=sequences, seq_len=s, gradcache=config.training.gradcache)
    return {"world_size": world_size, "tp": tp, "pp": pp, "dp": dp,
            "vpp": par.virtual_pipeline_model_parallel_size, "parameters": params,
            "parameters_per_gpu": per_gpu, "memory_static_gib": static / 2**30,
            "memory_activations_gib": activations / 2**30,
            "memory_total_gib": (static + activations) / 2**30,
            "micro_batches_per_step": data.global_batch_size // (data.micro_batch_size * dp),
            "flops_per_step": flops, "lora": lora, "packing": _packing(config),
            "weights": describe_weights(config)}


def _packing(config: RunConfig) -> str | None:
    data = config.data
    if not data.packing:
        return None
    if data.micro_batch_tokens:
        return f"token budget {data.micro_batch_tokens} per micro-batch (data.micro_batch_tokens)"
    return "one token stream per micro-batch, no padding inside (data.packing)"


def lora_memory(config: RunConfig, *, tp: int, pp: int, weight_bytes: int, optim: float) -> dict:
    """LoRA: frozen base weights only (no gradient, no optimizer state); adapters (and the head,
    if it trains) with weights, fp32 gradients and Adam state. Per GPU, bytes."""
    from megatron_hybridir.model.lora import adapter_parameter_count

    m = config.model
    heads, groups, d = m.num_attention_heads, m.kv_heads, m.head_dim
    sizes = dict(hidden=m.hidden_size, ffn=m.ffn_hidden_size, qkv_out=d * (heads + 2 * groups),
                 attn_in=heads * d, gated=m.layer_kind == "llama", rank=m.lora.rank,
                 targets=m.lora.target_modules)
    adapters_total = adapter_parameter_count(**sizes, layers=m.num_layers)
    adapters_gpu = adapter_parameter_count(**sizes, layers=m.num_layers // pp, tp=tp)
    head = count_parameters(m) - count_parameters(m, include_head=False)
    head = head if m.lora.train_head else 0        # on the last stage, replicated over TP
    base_gpu = count_parameters(m, include_head=not m.lora.train_head) / (tp * pp)
    trainable_gpu = adapters_gpu + head
    return {"adapter_parameters": adapters_total, "head_parameters": head,
            "trainable_parameters_per_gpu": trainable_gpu,
            "frozen_weights_gib": base_gpu * weight_bytes / 2**30,
            "adapter_weights_gib": trainable_gpu * weight_bytes / 2**30,
            "adapter_grads_gib": trainable_gpu * 4 / 2**30,
            "adapter_optimizer_gib": trainable_gpu * optim / 2**30,
            "static_bytes": base_gpu * weight_bytes + trainable_gpu * (weight_bytes + 4 + optim)}


def format_estimate(e: dict) -> str:
    return "\n".join([
        f"layout: {e['world_size']} GPUs = TP {e['tp']} x PP {e['pp']} x DP {e['dp']}"
        + (f" (virtual PP {e['vpp']})" if e["vpp"] else ""),
        f"weights: {e['weights']}",
        f"parameters: {e['parameters'] / 1e9:.2f} B total, {e['parameters_per_gpu'] / 1e9:.2f} B per GPU",
        f"memory per GPU (estimate): {e['memory_total_gib']:.1f} GiB = "
        f"{e['memory_static_gib']:.1f} weights+grads+optimizer + "
        f"{e['memory_activations_gib']:.1f} activations",
        *(_format_lora(e["lora"]) if e.get("lora") else []),
        f"micro-batches per step per DP rank: {e['micro_batches_per_step']}",
        f"FLOPs per step (every row at seq_length, an upper bound): {e['flops_per_step']:.3e}",
        *([f"packed micro-batches: {e['packing']}"] if e.get("packing") else []),
    ])


def _format_lora(lora: dict) -> list[str]:
    return [
        f"LoRA: {lora['adapter_parameters'] / 1e6:.1f} M adapter parameters"
        + (f" + {lora['head_parameters'] / 1e6:.2f} M head" if lora["head_parameters"] else "")
        + f"; only these are in the optimizer ({lora['trainable_parameters_per_gpu'] / 1e6:.1f} M per GPU)",
        f"  frozen base weights {lora['frozen_weights_gib']:.2f} GiB (no gradients, no optimizer state)",
        f"  adapters: weights {lora['adapter_weights_gib']:.3f} GiB, fp32 gradients "
        f"{lora['adapter_grads_gib']:.3f} GiB, Adam state {lora['adapter_optimizer_gib']:.3f} GiB",
    ]
