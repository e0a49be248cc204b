"""Conversion throughput and peak memory on a synthetic >= 1 GB Llama checkpoint (bf16).

Steps, each in a fresh subprocess (its own peak RSS):
  import: HF folder -> Megatron distributed checkpoint (tools/convert_hf_to_megatron.py's function)
  export: that checkpoint -> HF + sentence-transformers folder (streamed per layer)
  peer:   transformers ``AutoModel.from_pretrained`` + ``save_pretrained`` of the same HF folder,
          the usual way to rewrite a checkpoint.
Prints GB/s and peak RSS (VmHWM of each child) for each, the throughput ratio against the peer,
and the memory bound from the issue: 2 x largest tensor + 1 GiB.

    python tools/bench/bench_convert.py [--layers 10] [--hidden 2048] [--ffn 5504]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def write_tokenizer(folder: Path) -> None:
    """A small word-level tokenizer: conversion copies the tokenizer files, whatever they hold."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<pad>", "<unk>", "</s>"] + [f"w{i}" for i in range(61)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>",
                            eos_token="</s>").save_pretrained(str(folder))


def write_checkpoint(folder: Path, layers: int, hidden: int, ffn: int, vocab: int) -> tuple[int, int]:
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    heads, kv = hidden // 128, max(1, hidden // 512)
    config = {"model_type": "llama", "architectures": ["LlamaModel"], "hidden_size": hidden,
              "intermediate_size": ffn, "num_hidden_layers": layers, "num_attention_heads": heads,
              "num_key_value_heads": kv, "vocab_size": vocab, "max_position_embeddings": 4096,
              "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "torch_dtype": "bfloat16",
              "tie_word_embeddings": False}
    (folder / "config.json").write_text(json.dumps(config))
    g = torch.Generator().manual_seed(0)
    rand = lambda *shape: (torch.randn(*shape, generator=g) * 0.02).to(torch.bfloat16)  # noqa: E731
    weight_map, total, largest = {}, 0, 0
    shards = [{"embed_tokens.weight": rand(vocab, hidden), "norm.weight": rand(hidden)}]
    for i in range(layers):
        p = f"layers.{i}."
        shards.append({p + "input_layernorm.weight": rand(hidden), p + "post_attention_layernorm.weight": rand(hidden),
                       p + "self_attn.q_proj.weight": rand(hidden, hidden),
                       p + "self_attn.k_proj.weight": rand(kv * 128, hidden),
                       p + "self_attn.v_proj.weight": rand(kv * 128, hidden),
                       p + "self_attn.o_proj.weight": rand(hidden, hidden),
                       p + "mlp.gate_proj.weight": rand(ffn, hidden), p + "mlp.up_proj.weight": rand(ffn, hidden),
                       p + "mlp.down_proj.weight": rand(hidden, ffn)})
    for n, shard in enumerate(shards):
        name = f"model-{n + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, folder / name, metadata={"format": "pt"})
        for k, t in shard.items():
            weight_map[k] = name
            total += t.numel() * 2
            largest = max(largest, t.numel() * 2)
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    write_tokenizer(folder)
    return total, largest


def _child(step: str, tmp: Path) -> dict:
    start = time.perf_counter()
    if step == "import":
        from megatron_hybridir.convert.hf_import import import_hf
        import_hf(tmp / "hf", tmp / "meg", dtype="bf16")
    elif step == "export":
        from megatron_hybridir.convert.hf_export import export_hf
        export_hf(tmp / "meg", tmp / "export")
    else:
        from transformers import AutoModel
        AutoModel.from_pretrained(str(tmp / "hf"), torch_dtype=torch.bfloat16).save_pretrained(str(tmp / "peer"))
    return {"seconds": time.perf_counter() - start, "peak_rss_gb": peak_rss_gib()}


def peak_rss_gib() -> float:
    """This process's peak RSS. Not ``getrusage``: on Linux its ru_maxrss survives exec, so a child
    started by a large parent would report the parent's size; VmHWM belongs to this address space."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=11)
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--ffn", type=int, default=5504)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child[0], Path(args.child[1]))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        total, largest = write_checkpoint(Path(tmp) / "hf", args.layers, args.hidden, args.ffn, args.vocab)
        runs = {}
        for step in ("import", "export", "peer"):
            proc = subprocess.run([sys.executable, __file__, "--child", step, tmp], capture_output=True,
                                  text=True)
            if proc.returncode:
                sys.exit(proc.stderr[-3000:])
            runs[step] = json.loads(proc.stdout.strip().splitlines()[-1])
    bound = (2 * largest + (1 << 30)) / 2**30
    gb = total / 2**30
    print(f"synthetic Llama checkpoint: {gb:.2f} GiB bf16, largest tensor {largest / 2**20:.0f} MiB; "
          f"memory bound 2 x largest + 1 GiB = {bound:.2f} GiB")
    for step, label in (("import", "HF -> Megatron (ours)"), ("export", "Megatron -> HF + ST (ours)"),
                        ("peer", "transformers load + save_pretrained (peer)")):
        r = runs[step]
        print(f"  {label:44s} {r['seconds']:6.1f} s  {gb / r['seconds']:.2f} GiB/s  peak RSS "
              f"{r['peak_rss_gb']:.2f} GiB  {'within' if r['peak_rss_gb'] <= bound else 'ABOVE'} bound")
    print(f"  throughput vs peer: import {runs['peer']['seconds'] / runs['import']['seconds']:.2f}x, "
          f"export {runs['peer']['seconds'] / runs['export']['seconds']:.2f}x")


if __name__ == "__main__":
    main()
