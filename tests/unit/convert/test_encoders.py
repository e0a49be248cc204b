"""XLM-R and LaBSE-style BERT on Megatron-Core: HF hidden states, exact round trip, sentence-
transformers embeddings (LaBSE's CLS + dense + tanh + normalisation), config checks and errors."""

import json
import shutil

import numpy as np
import pytest
import torch

from megatron_hybridir.convert.hf_export import export_hf
from megatron_hybridir.convert.hf_import import ImportHead, import_hf
from megatron_hybridir.convert.mappings import ConversionError
from tests.unit.convert.hf_fixtures import load_tool, write_hf_model
from tests.unit.convert.test_roundtrip import TEXTS, _ids, load_megatron

HEADS = {"xlmr": ImportHead(pooling="mean"), "labse": ImportHead(pooling="first", pooler=True)}


def _safetensors(folder, drop=()):
    from safetensors.torch import load_file

    out = {}
    for f in sorted(folder.glob("*.safetensors")):
        for k, v in load_file(f).items():
            bare = k.removeprefix("roberta.")
            if not bare.startswith(drop):
                out[bare] = v
    return out


@pytest.mark.parametrize("family", ["xlmr", "labse"])
def test_encoder_import_matches_hf_and_round_trips_exactly(tmp_path, megatron_runtime, family):
    from transformers import AutoModel

    hf = write_hf_model(tmp_path / "hf", family, shards=family == "xlmr")
    converted = import_hf(hf, tmp_path / "meg", dtype="fp32", head=HEADS[family])
    model = load_megatron(converted)
    ids, mask = _ids(TEXTS)
    with torch.no_grad():
        ours = model(ids, mask, return_hidden=True)
        ref = AutoModel.from_pretrained(str(hf)).eval()(input_ids=ids,
                                                        attention_mask=mask.long()).last_hidden_state
    assert (ours - ref)[mask].abs().max().item() < 1e-5
    out = export_hf(converted, tmp_path / "out")
    # The MLM head is not part of an embedder; XLM-R's pooler is unused by mean pooling.
    original = _safetensors(hf, drop=("lm_head.",) + (("pooler.",) if family == "xlmr" else ()))
    exported = _safetensors(out)
    assert set(exported) == set(original)
    for name, tensor in original.items():
        assert torch.equal(exported[name], tensor), name
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == [{"xlmr": "XLMRobertaModel", "labse": "BertModel"}[family]]


@pytest.mark.parametrize("family", ["xlmr", "labse"])
def test_sentence_transformers_embeddings_equal_megatron(tmp_path, megatron_runtime, family):
    from sentence_transformers import SentenceTransformer

    hf = write_hf_model(tmp_path / "hf", family)
    converted = import_hf(hf, tmp_path / "meg", dtype="fp32", head=HEADS[family])
    model = load_megatron(converted)
    out = export_hf(converted, tmp_path / "out")
    st = SentenceTransformer(str(out), device="cpu")
    features = st.tokenize(TEXTS)
    assert (features["input_ids"][:, 0] == 66).all()        # <s> first: CLS pooling sees it
    with torch.no_grad():
        ours = model(features["input_ids"], features["attention_mask"].bool()).numpy()
    theirs = st.encode(TEXTS, batch_size=4)
    assert np.abs(theirs - ours).max() < 1e-5
    modules = [m["type"].rsplit(".", 1)[1] for m in json.loads((out / "modules.json").read_text())]
    if family == "labse":
        assert modules == ["Transformer", "Pooling", "Dense", "Normalize"]
        dense = json.loads((out / "2_Dense" / "config.json").read_text())
        assert dense["bias"] and dense["activation_function"].endswith("Tanh")
        # The pooler is the HF model's own: LaBSE's pooler_output is tanh(dense(CLS)).
        from transformers import AutoModel
        hf_out = AutoModel.from_pretrained(str(hf)).eval()(
            input_ids=features["input_ids"], attention_mask=features["attention_mask"])
        expected = torch.nn.functional.normalize(hf_out.pooler_output, dim=-1).detach().numpy()
        assert np.abs(expected - ours).max() < 1e-5
    else:
        assert modules == ["Transformer", "Pooling", "Normalize"]


def test_encoder_tools_verify(tmp_path, megatron_runtime, capsys):

    hf = write_hf_model(tmp_path / "hf", "labse")
    assert load_tool("convert_hf_to_megatron")(["--hf", str(hf), "--output", str(tmp_path / "meg"),
                                           "--dtype", "fp32", "--pooling", "first", "--pooler",
                                           "--verify"]) == 0
    out = capsys.readouterr().out
    assert "hidden states (Megatron vs HF)" in out and "every tensor identical (OK)" in out
    assert load_tool("export_to_hf")(["--checkpoint", str(tmp_path / "meg"), "--output", str(tmp_path / "st"),
                                 "--verify"]) == 0
    assert "embeddings (Megatron vs sentence-transformers)" in capsys.readouterr().out


def test_encoder_errors_before_anything_is_written(tmp_path, megatron_runtime):
    hf = write_hf_model(tmp_path / "hf", "xlmr")
    cfg = json.loads((hf / "config.json").read_text())
    bad = tmp_path / "bad"
    shutil.copytree(hf, bad)
    cases = [({"hidden_act": "relu"}, "hidden_act='relu'"),
             ({"position_embedding_type": "relative_key"}, "only learned absolute positions"),
             ({"intermediate_size": 40}, r"intermediate.dense.weight has shape \(48, 32\), expected \(40, 32\)")]
    for n, (change, message) in enumerate(cases):
        (bad / "config.json").write_text(json.dumps({**cfg, **change}))
        with pytest.raises(ConversionError, match=message):
            import_hf(bad, tmp_path / f"out{n}")
    with pytest.raises(ConversionError, match="tensor parallel size 3 does not divide"):
        import_hf(hf, tmp_path / "tp3", tensor_parallel=3)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(("out", "tp3"))]


def test_encoder_config_validation():
    from megatron_hybridir.config import ConfigError, ModelConfig, ParallelConfig, validate_model

    enc = dict(layer_kind="bert", max_position_embeddings=514, position_offset=2, type_vocab_size=1)
    validate_model(ModelConfig(**enc), ParallelConfig(), seq_length=512)
    with pytest.raises(ConfigError, match="seq_length: 513 is longer .* minus model.position_offset=2"):
        validate_model(ModelConfig(**enc), ParallelConfig(), seq_length=513)
    with pytest.raises(ConfigError, match="model.attention: a bert encoder is bidirectional"):
        validate_model(ModelConfig(**enc, attention="causal"), ParallelConfig(), seq_length=8)
    with pytest.raises(ConfigError, match="model.layer_kind: expected llama or bert, got 'gpt'"):
        validate_model(ModelConfig(layer_kind="gpt"), ParallelConfig(), seq_length=8)
    with pytest.raises(ConfigError, match="model.type_vocab_size"):
        validate_model(ModelConfig(type_vocab_size=2), ParallelConfig(), seq_length=8)


@pytest.mark.parametrize("name", ["xlmr-large", "labse"])
def test_encoder_presets_count_the_public_parameters(name):
    """Exact parameter counts of the public checkpoints: LaBSE's 470,926,848 (with its pooler) and
    XLM-R large's 559,890,432 less its pooler (1024 x 1024 + 1024), unused by mean pooling."""
    from megatron_hybridir.model.builder import count_parameters
    from megatron_hybridir.config.presets import preset

    expected = {"xlmr-large": 559_890_432 - 1_049_600, "labse": 470_926_848}[name]
    model = preset(name, make_vocab_size_divisible_by=1)
    assert count_parameters(model) == expected
