"""Provenance of an import: the source's sentence-transformers pipeline (pooling, normalisation,
max_seq_length, prompts) is recorded and reproduced by a default export."""

import json

import pytest

from megatron_hybridir.checkpointing import provenance
from megatron_hybridir.checkpointing.folders import resolve_checkpoint
from megatron_hybridir.convert.hf_export import export_hf
from megatron_hybridir.convert.hf_import import ImportHead, import_hf
from megatron_hybridir.convert.mappings import ConversionError
from tests.unit.convert.hf_fixtures import write_hf_model


def _sentence_transformers(folder, *, pooling="pooling_mode_cls_token", prompts=None):
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 32, pooling: True, "include_prompt": False}))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 24,
                                                                 "do_lower_case": False}))
    (folder / "config_sentence_transformers.json").write_text(json.dumps({"prompts": prompts or {}}))


def test_default_export_reproduces_the_source_pipeline(tmp_path, megatron_runtime):
    from sentence_transformers import SentenceTransformer

    hf = write_hf_model(tmp_path / "hf", "labse")
    _sentence_transformers(hf, prompts={"query": "Query: "})
    converted = import_hf(hf, tmp_path / "meg", dtype="fp32")
    model, _, info = resolve_checkpoint(converted)
    assert (model.family, model.pooling, model.normalize) == ("bert", "first", False)
    record = info["provenance"]
    assert record["hf"]["architectures"] == ["BertModel"]
    assert record["tokenizer"]["hash"] == provenance.tokenizer_hash(hf)
    out = export_hf(converted, tmp_path / "out")
    exported = SentenceTransformer(str(out), device="cpu")
    original = SentenceTransformer(str(hf), device="cpu")
    assert exported.max_seq_length == original.max_seq_length == 24
    assert exported.prompts == original.prompts and exported.prompts["query"] == "Query: "
    assert [type(m).__name__ for m in exported] == ["Transformer", "Pooling"]   # no Normalize
    assert json.loads((out / "1_Pooling" / "config.json").read_text())["include_prompt"] is False
    texts = ["w1 w2 w3", "w4 w5 w6 w7 w8 w9 w10", "w11"]
    a, b = original.encode(texts, prompt_name="query"), exported.encode(texts, prompt_name="query")
    assert abs(a - b).max() < 1e-5


def test_unsupported_sentence_transformers_pooling_is_named(tmp_path, megatron_runtime):
    hf = write_hf_model(tmp_path / "hf", "labse")
    _sentence_transformers(hf, pooling="pooling_mode_max_tokens")
    with pytest.raises(ConversionError, match=r"pooling \['pooling_mode_max_tokens'\] has no "
                                              r"counterpart here .* pass --pooling"):
        import_hf(hf, tmp_path / "meg", dtype="fp32")
    import_hf(hf, tmp_path / "meg", dtype="fp32", head=ImportHead(pooling="mean"))        # an explicit choice
