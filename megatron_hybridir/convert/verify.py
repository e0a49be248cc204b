"""``--verify`` for both conversion tools: same embeddings, and an exact HF -> Megatron -> HF trip.

Both checks feed identical token ids to the two models (tokenized once by the HF side), so they test
the weights and the architecture mapping, not tokenizer settings.

What it does not do: convert. The round trip compares an export the importer made (``hf_import``
calls ``hf_export``), so this module sits below both converters and imports neither.
"""

from __future__ import annotations

from pathlib import Path

import torch

from megatron_hybridir.checkpointing.folders import resolve_checkpoint
from megatron_hybridir.config import ModelConfig, ParallelConfig
from megatron_hybridir.convert.checkpoint_reader import CheckpointReader
from megatron_hybridir.convert.lora_merge import adapter_base, load_lora_model
from megatron_hybridir.convert.mappings import ConversionError
from megatron_hybridir.runtime.distributed import compute_device

SAMPLE_TEXTS = ("Query: where is the river that runs past the old castle?",
                "Passage: The river runs along the castle walls and into the harbour.",
                "ein kurzer Satz", "这是一个测试句子", "x")


def load_full_model(model_cfg: ModelConfig, ckpt: Path):
    """The whole model at TP=1 from a distributed checkpoint of any layout (fp32)."""
    from megatron_hybridir.checkpointing.model_state import load_model_state
    from megatron_hybridir.model.builder import build_model
    from megatron_hybridir.runtime.distributed import ensure_runtime

    ensure_runtime()
    if model_cfg.lora is not None:       # base + adapters (the export has them merged)
        base = CheckpointReader(Path(adapter_base(ckpt)["checkpoint"]))
        rows = base.shape("embedding.word_embeddings.weight")[0]
        return load_lora_model(model_cfg, ckpt, rows)
    rows = CheckpointReader(ckpt).shape("embedding.word_embeddings.weight")[0]
    model = build_model(model_cfg, ParallelConfig(), vocab_rows=rows)
    load_model_state(ckpt, [model], fresh_head=False)
    return model.eval()


def _report(name: str, diff: float, tol: float) -> dict:
    ok = diff < tol
    print(f"verify {name}: max |difference| {diff:.2e} ({'OK' if ok else 'FAILED'}, tolerance {tol:g})")
    if not ok:
        raise ConversionError(f"verification failed: {name} differ by {diff:.2e} (tolerance {tol:g})")
    return {name: diff}


def verify_import(hf_dir: Path, converted: Path, *, exported: Path, texts=SAMPLE_TEXTS,
                  tol: float = 1e-4) -> dict:
    """Megatron final hidden states == HF last_hidden_state, and the HF tensors survive a trip
    back: ``exported`` is ``converted`` exported again (by the importer)."""
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoTokenizer

    model_cfg, ckpt, _ = resolve_checkpoint(converted)
    ours = load_full_model(model_cfg, ckpt)
    hf = AutoModel.from_pretrained(str(hf_dir), torch_dtype=torch.float32).eval()
    hf.config.is_causal = model_cfg.attention == "causal"
    tok = AutoTokenizer.from_pretrained(str(converted / "tokenizer"))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    batch = tok(list(texts), padding=True, return_tensors="pt", add_special_tokens=False)
    mask = batch["attention_mask"].bool()
    with torch.no_grad():
        # The Megatron model runs on the compute device (its GPU when there is one), HF on CPU.
        device = compute_device()
        a = ours(batch["input_ids"].to(device), mask.to(device), return_hidden=True).cpu()
        b = hf(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    result = _report("hidden states (Megatron vs HF)", (a - b)[mask].abs().max().item(), tol)
    back = {}
    for f in Path(exported).glob("*.safetensors"):
        back.update(load_file(f))
    mismatched = []
    for f in hf_dir.glob("*.safetensors"):
        for name, tensor in load_file(f).items():
            bare = name.removeprefix("model.")
            if bare in back and not torch.equal(back[bare].to(tensor.dtype), tensor):
                mismatched.append(bare)
    if mismatched:
        raise ConversionError(f"round trip HF -> Megatron -> HF changed {mismatched[:5]}")
    print("verify round trip HF -> Megatron -> HF: every tensor identical (OK)")
    return result


def verify_export(checkpoint: Path, exported: Path, texts=SAMPLE_TEXTS, tol: float = 1e-4) -> dict:
    """SentenceTransformer(exported) embeddings == the Megatron model's embeddings."""
    from sentence_transformers import SentenceTransformer

    model_cfg, ckpt, _ = resolve_checkpoint(checkpoint)
    ours = load_full_model(model_cfg, ckpt)
    st = SentenceTransformer(str(exported), device="cpu")
    features = st.tokenize(list(texts))
    with torch.no_grad():
        device = compute_device()
        a = ours(features["input_ids"].to(device),
                 features["attention_mask"].bool().to(device)).cpu().numpy()
    b = st.encode(list(texts), batch_size=len(texts))
    return _report("embeddings (Megatron vs sentence-transformers)", float(abs(a - b).max()), tol)
