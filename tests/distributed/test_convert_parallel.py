"""HF -> Megatron conversion loaded at TP=2 and PP=2 (two gloo ranks) gives the loss computed from
the HF model's own embeddings (mean pooling + L2 norm, the same InfoNCE)."""

from __future__ import annotations

import pytest
import torch

from megatron_hybridir.convert.hf_import import import_hf
from megatron_hybridir.loss import info_nce
from tests.distributed.convert_workers import LOSS, batch, loss_at_layout
from tests.distributed.harness import run_ranks
from tests.unit.convert.hf_fixtures import WORDS, write_hf_model


def hf_loss(hf_dir) -> float:
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(hf_dir)).eval()
    model.config.is_causal = False
    b = batch(len(WORDS))
    mask = b["attention_mask"]
    with torch.no_grad():
        hidden = model(input_ids=b["input_ids"], attention_mask=mask.long()).last_hidden_state
    pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    emb = torch.nn.functional.normalize(pooled, dim=-1)
    n = b["num_queries"]
    return info_nce(emb[:n], emb[n:2 * n], emb[2 * n:].reshape(n, 1, -1),
                    scale=torch.tensor(1 / LOSS.temperature)).loss.item()


@pytest.mark.parametrize("parallel", [{"tensor_model_parallel_size": 2},
                                      {"pipeline_model_parallel_size": 2}], ids=["tp2", "pp2"])
def test_converted_checkpoint_at_tp_pp_matches_hf(tmp_path, parallel, megatron_runtime):
    hf = write_hf_model(tmp_path / "hf", "qwen2")
    converted = import_hf(hf, tmp_path / "meg", dtype="fp32", pooling="mean",
                          tensor_parallel=parallel.get("tensor_model_parallel_size", 1),
                          pipeline_parallel=parallel.get("pipeline_model_parallel_size", 1))
    run_ranks(loss_at_layout, 2, str(converted), parallel, str(tmp_path), len(WORDS))
    losses = [torch.load(p).item() for p in sorted(tmp_path.glob("loss_rank*.pt"))]
    assert losses
    for loss in losses:
        assert loss == pytest.approx(hf_loss(hf), abs=1e-5)
