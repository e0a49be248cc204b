"""The pooling registry is the one place a pooling type is known.

Registering a class — what its own file's ``@register_pooling`` does on import — is all it takes
for the type to reach config validation, the head, the parameter and FLOP counts (and so the
dry-run), sentence-transformers export and import, and the ``--pooling`` CLI choices.
"""

from __future__ import annotations

import contextlib
import json
from unittest.mock import patch

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from megatron_hybridir.config import ConfigError, load_config
from megatron_hybridir.config.presets import preset
from megatron_hybridir.convert import provenance
from megatron_hybridir.convert.st_modules import pooling_mode as st_pooling_mode
from megatron_hybridir.convert.st_modules import write_modules
from megatron_hybridir.convert.mappings import ConversionError
from megatron_hybridir.model.builder import count_parameters
from megatron_hybridir.model import pooling_kinds
from megatron_hybridir.model.pooling import (POOLINGS, PoolingType, register_pooling,
                                             sentence_transformers_modes)
from megatron_hybridir.training.dry_run import estimate
from megatron_hybridir.training.flops import forward_flops_per_sequence
from tests.registries import temporarily_registered
from tests.unit.convert.hf_fixtures import load_tool

BUILT_IN = ["mean", "last", "first", "latent_attention"]


class ToyAttentionMean(PoolingType):
    """A learned query scores the tokens; the softmax over real tokens weights their mean.
    No sentence-transformers counterpart."""

    name = "toy_attention_mean"
    module_name = "toy"

    def __init__(self, model):
        super().__init__(model)
        self.query = nn.Parameter(torch.randn(model.hidden_size, 1))

    def forward(self, hidden, mask):
        scores = (hidden @ self.query).squeeze(-1).masked_fill(~mask, float("-inf"))  # [b, s]
        return (torch.softmax(scores, dim=-1).unsqueeze(1) @ hidden).squeeze(1)

    @classmethod
    def parameter_count(cls, model):
        return model.hidden_size

    @classmethod
    def forward_flops(cls, model, seq_len):
        return float(2 * 2 * seq_len * model.hidden_size)   # scores + weighted sum


class ToyMax(PoolingType):
    """Max over real tokens: sentence-transformers' ``max`` mode."""

    name = "toy_max"
    st_mode = "pooling_mode_max_tokens"

    def forward(self, hidden, mask):
        return hidden.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(dim=1)


@contextlib.contextmanager
def registered(*items):
    """Register for the duration of a block; the registry (and the kinds config validation
    reads) are as before afterwards."""
    with patch.dict(pooling_kinds.POOLING_KINDS), \
            temporarily_registered(POOLINGS, register_pooling, *items):
        yield


def _st_pipeline(flag: str) -> dict:
    return {"modules": ["Transformer", "Pooling"], "pooling": {flag: True}}


def test_built_in_types_and_their_sentence_transformers_modes():
    assert list(POOLINGS) == BUILT_IN
    # The torch-free kinds config validation reads name every built-in type, in order.
    assert [k.name for k in pooling_kinds.BUILT_IN] == BUILT_IN
    assert list(pooling_kinds.POOLING_KINDS) == BUILT_IN
    assert sentence_transformers_modes() == {"mean": "pooling_mode_mean_tokens",
                                             "last": "pooling_mode_lasttoken",
                                             "first": "pooling_mode_cls_token"}
    with pytest.raises(ConversionError, match=r"model.pooling='latent_attention' has no "
                                              r"sentence-transformers / HF equivalent; export "
                                              r"supports \['first', 'last', 'mean'\]"):
        st_pooling_mode(preset("tiny", pooling="latent_attention"))


def test_a_type_is_registered_once():
    class Other(ToyMax):
        name = "mean"

    with pytest.raises(ValueError, match="pooling 'mean' is already registered by MeanPooling"):
        register_pooling(Other)
    with pytest.raises(TypeError, match="is not a PoolingType subclass"):
        register_pooling(nn.Linear)
    assert list(POOLINGS) == BUILT_IN


def test_config_validation_reads_the_registry():
    overrides = ["model.preset=tiny", "model.pooling=toy_max"]
    with pytest.raises(ConfigError, match=r"model.pooling: unknown pooling 'toy_max'; expected one "
                                          r"of \['mean', 'last', 'first', 'latent_attention'\]"):
        load_config(None, overrides)
    with registered(ToyMax):
        assert load_config(None, overrides).model.pooling == "toy_max"
    # A type's own constraints (PoolingType.check) are reported with the field.
    with pytest.raises(ConfigError, match=r"model.latent_num_heads: hidden_size 64 is not "
                                          r"divisible by 3"):
        load_config(None, ["model.preset=tiny", "model.pooling=latent_attention",
                           "model.latent_num_heads=3"])


def test_the_head_counts_and_flops_use_the_registered_class(build_tiny):
    with registered(ToyAttentionMean):
        model = build_tiny(pooling="toy_attention_mean")
        cfg = preset("tiny", pooling="toy_attention_mean")
        h = cfg.hidden_size
        query = dict(model.named_parameters())["head.toy.query"]
        ids = torch.randint(1, 250, (3, 24), generator=torch.Generator().manual_seed(0))
        lengths = torch.tensor([24, 10, 3])
        mask = torch.arange(24)[None, :] < lengths[:, None]
        with torch.no_grad():
            hidden = model(ids, mask, return_hidden=True)
            expected = torch.stack([torch.softmax(hidden[i, :n] @ query[:, 0], dim=0) @ hidden[i, :n]
                                    for i, n in enumerate(lengths.tolist())])
            torch.testing.assert_close(model(ids, mask), F.normalize(expected, dim=-1))
            with FlopCounterMode(display=False) as counter:
                model(ids, mask)
        # Counts: the built model, the formula, the mean-pooled model plus the toy's h.
        params = sum(p.numel() for p in model.parameters())
        assert params == count_parameters(cfg) == count_parameters(preset("tiny")) + h
        assert counter.get_total_flops() == 3 * forward_flops_per_sequence(cfg, 24)
        assert (forward_flops_per_sequence(cfg, 24)
                == forward_flops_per_sequence(preset("tiny"), 24) + 4 * 24 * h)
        # The dry-run's parameters and FLOPs per step follow.
        run = load_config(None, ["model.preset=tiny", "seq_length=32", "training.gradcache=false",
                                 "model.pooling=toy_attention_mean"])
        toy = estimate(run, world_size=1)
        run.model.pooling = "mean"
        base = estimate(run, world_size=1)
        sequences = run.data.global_batch_size * (2 + run.loss.num_hard_negatives)
        assert toy["parameters"] == base["parameters"] + h
        assert toy["flops_per_step"] == base["flops_per_step"] + 3 * sequences * 4 * 32 * h


def test_export_and_import_modes_come_from_the_registry(tmp_path):
    from sentence_transformers.models import Pooling

    with pytest.raises(ConversionError, match=r"pooling \['pooling_mode_max_tokens'\] has no "
                                              r"counterpart here"):
        provenance.head_from_sentence_transformers(_st_pipeline("pooling_mode_max_tokens"))
    with registered(ToyMax, ToyAttentionMean):
        # import: the source pipeline's flag picks the type
        assert provenance.head_from_sentence_transformers(
            _st_pipeline("pooling_mode_max_tokens")) == {"normalize": False, "pooling": "toy_max"}
        # export: the type's flag is written, and sentence-transformers reads it back as max
        model = preset("tiny", pooling="toy_max", normalize=False)
        write_modules(tmp_path, model, {}, {}, 32, None)
        written = json.loads((tmp_path / "1_Pooling" / "config.json").read_text())
        assert [k for k, v in written.items() if k.startswith("pooling_mode_") and v] == [
            "pooling_mode_max_tokens"]
        assert Pooling.load(str(tmp_path / "1_Pooling")).get_config_dict()["pooling_mode"] == "max"
        # a type without a sentence-transformers mode is refused, naming what export supports
        with pytest.raises(ConversionError, match=r"model.pooling='toy_attention_mean' has no "
                                                  r"sentence-transformers / HF equivalent; export "
                                                  r"supports \['first', 'last', 'mean', 'toy_max'\]"):
            st_pooling_mode(preset("tiny", pooling="toy_attention_mean"))


def test_cli_choices_come_from_the_registry(capsys):
    convert = load_tool("convert_hf_to_megatron")
    with registered(ToyMax), pytest.raises(SystemExit):
        convert(["--hf", "x", "--output", "y", "--pooling", "nope"])
    assert ("argument --pooling: invalid choice: 'nope' (choose from 'mean', 'last', 'first', "
            "'latent_attention', 'toy_max')") in capsys.readouterr().err.replace('"', "'")
