"""HF -> Megatron conversion loaded at TP=2 and PP=2 (two gloo ranks) gives the loss computed from
the HF model's own embeddings (mean pooling, or LaBSE's pooler output, + L2 norm, the same InfoNCE):
Qwen2, XLM-R and a LaBSE-style BERT."""

from __future__ import annotations

import pytest
import torch

from megatron_hybridir.convert.hf_import import ImportHead, import_hf
from megatron_hybridir.loss import info_nce
from tests.distributed.convert_workers import LOSS, batch, loss_at_layout
from tests.distributed.harness import run_ranks
from tests.unit.convert.hf_fixtures import WORDS, write_hf_model


HEADS = {"qwen2": ImportHead(pooling="mean"), "xlmr": ImportHead(pooling="mean"),
         "labse": ImportHead(pooling="first", pooler=True)}


def hf_loss(hf_dir, family: str) -> float:
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(hf_dir)).eval()
    model.config.is_causal = False
    b = batch(len(WORDS))
    mask = b.attention_mask
    with torch.no_grad():
        out = model(input_ids=b.input_ids, attention_mask=mask.long())
    hidden = out.last_hidden_state
    pooled = (out.pooler_output if family == "labse"
              else (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True))
    emb = torch.nn.functional.normalize(pooled, dim=-1)
    n = b.num_queries
    return info_nce(emb[:n], emb[n:2 * n], emb[2 * n:].reshape(n, 1, -1),
                    scale=torch.tensor(1 / LOSS.temperature)).loss.item()


@pytest.mark.parametrize("family,parallel", [
    ("qwen2", {"tensor_model_parallel_size": 2}), ("qwen2", {"pipeline_model_parallel_size": 2}),
    ("xlmr", {"tensor_model_parallel_size": 2}), ("labse", {"tensor_model_parallel_size": 2})],
    ids=["qwen2-tp2", "qwen2-pp2", "xlmr-tp2", "labse-tp2"])
def test_converted_checkpoint_at_tp_pp_matches_hf(tmp_path, family, parallel, megatron_runtime):
    hf = write_hf_model(tmp_path / "hf", family)
    converted = import_hf(hf, tmp_path / "meg", dtype="fp32", head=HEADS[family],
                          tensor_parallel=parallel.get("tensor_model_parallel_size", 1),
                          pipeline_parallel=parallel.get("pipeline_model_parallel_size", 1))
    run_ranks(loss_at_layout, 2, str(converted), parallel, str(tmp_path), len(WORDS))
    losses = [torch.load(p).item() for p in sorted(tmp_path.glob("loss_rank*.pt"))]
    assert losses
    for loss in losses:
        assert loss == pytest.approx(hf_loss(hf, family), abs=1e-5)
