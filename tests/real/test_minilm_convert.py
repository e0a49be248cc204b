"""all-MiniLM-L6-v2 (real weights): import at TP=1 / TP=2 gives HF's hidden states; the default
export is the original sentence-transformers model (embeddings, max_seq_length, prompts)."""

from __future__ import annotations

import json

import pytest
import torch

from tests.distributed.harness import run_ranks
from tests.real.conftest import TEXTS
from tests.real.workers import hidden_states_at_tp


def _hf_batch(minilm):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(minilm))
    batch = tok(TEXTS, padding=True, truncation=True, max_length=512, return_tensors="pt")
    assert batch["input_ids"].shape[1] > 256          # the long text reaches past 256 positions
    return batch["input_ids"], batch["attention_mask"].bool()


@pytest.mark.parametrize("tp", [1, 2])
def test_import_gives_the_hf_hidden_states(tmp_path, minilm, tp):
    from transformers import AutoModel
    from megatron_hybridir.convert.hf_import import import_hf

    converted = import_hf(minilm, tmp_path / "converted", dtype="fp32", tensor_parallel=tp)
    ids, mask = _hf_batch(minilm)
    torch.save((ids, mask), tmp_path / "batch.pt")
    run_ranks(hidden_states_at_tp, tp, str(converted), tp, str(tmp_path / "batch.pt"),
              str(tmp_path / "hidden.pt"))
    ours = torch.load(tmp_path / "hidden.pt")
    hf = AutoModel.from_pretrained(str(minilm)).eval()
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask.long()).last_hidden_state
    diff = (ours - ref)[mask].abs().max().item()
    print(f"MiniLM TP={tp}: max |hidden-state difference| vs HF {diff:.2e}")
    assert diff < 1e-4, diff


def test_default_export_is_the_original_model(tmp_path, minilm, minilm_converted):
    from sentence_transformers import SentenceTransformer
    from megatron_hybridir.convert.hf_export import export_hf

    out = export_hf(minilm_converted, tmp_path / "export")
    original = SentenceTransformer(str(minilm), device="cpu")
    exported = SentenceTransformer(str(out), device="cpu")
    assert exported.max_seq_length == original.max_seq_length == 256
    assert {k: v for k, v in exported.prompts.items() if v} == {}      # none: it had none
    st = json.loads((out / "config_sentence_transformers.json").read_text())
    assert st["prompts"] == {}
    assert len(original.tokenizer(TEXTS[-1])["input_ids"]) > 256
    a = original.encode(TEXTS, convert_to_tensor=True)
    b = exported.encode(TEXTS, convert_to_tensor=True)
    diff = (a - b).abs().max().item()
    print(f"MiniLM export: max |embedding difference| vs the original {diff:.2e}")
    assert diff < 1e-5, diff
    for name in ("query", "document"):       # prompts by name, as the evaluator applies them
        a = original.encode(TEXTS, prompt_name=name if name in original.prompts else None,
                            convert_to_tensor=True)
        b = exported.encode(TEXTS, prompt_name=name if name in exported.prompts else None,
                            convert_to_tensor=True)
        assert (a - b).abs().max().item() < 1e-5


def test_cli_defaults_keep_the_fp32_model(tmp_path, minilm, monkeypatch, capsys):
    """No --dtype anywhere: the fp32 source stays fp32 (an import that cast to bf16 moved the
    embeddings by 2.5e-3), and export run from inside the model folder still takes the recorded
    tokenizer, not the working directory's."""
    from safetensors import safe_open
    from sentence_transformers import SentenceTransformer
    from tests.unit.convert.hf_fixtures import load_tool

    convert, export = load_tool("convert_hf_to_megatron"), load_tool("export_to_hf")
    assert convert(["--hf", str(minilm), "--output", str(tmp_path / "c")]) == 0
    assert json.loads((tmp_path / "c" / "provenance.json").read_text())["dtype"] == "fp32"
    monkeypatch.chdir(minilm)
    assert export(["--checkpoint", str(tmp_path / "c"), "--output", str(tmp_path / "e")]) == 0
    with safe_open(tmp_path / "e" / "model.safetensors", "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F32"}
    original = SentenceTransformer(str(minilm), device="cpu")
    exported = SentenceTransformer(str(tmp_path / "e"), device="cpu")
    assert next(exported.parameters()).dtype == torch.float32
    diff = (original.encode(TEXTS, convert_to_tensor=True)
            - exported.encode(TEXTS, convert_to_tensor=True)).abs().max().item()
    assert diff < 1e-5, diff
