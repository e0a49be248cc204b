"""Import keeps the source's dtype unless told to cast; export never takes a tokenizer it was not
given or does not record (no working-directory fallback), nor one larger than the model."""

import pytest
import torch

from megatron_hybridir.checkpointing import provenance
from megatron_hybridir.convert.hf_export import export_hf
from megatron_hybridir.convert.hf_import import import_hf
from megatron_hybridir.convert.mappings import ConversionError
from tests.unit.convert.hf_fixtures import WORDS, load_tool, write_hf_model


def _stored_dtypes(folder) -> set:
    from safetensors import safe_open

    found = set()
    for file in folder.glob("*.safetensors"):
        with safe_open(file, "pt") as f:
            found.update(f.get_slice(k).get_dtype() for k in f.keys())
    return found


def _to_bf16(hf):
    from safetensors.torch import load_file, save_file

    tensors = {k: v.to(torch.bfloat16) for k, v in load_file(hf / "model.safetensors").items()}
    save_file(tensors, hf / "model.safetensors", metadata={"format": "pt"})


@pytest.mark.slow
def test_default_import_keeps_fp32_and_export_keeps_it(tmp_path, megatron_runtime):
    hf = write_hf_model(tmp_path / "hf", "labse")
    assert _stored_dtypes(hf) == {"F32"}
    converted = import_hf(hf, tmp_path / "meg")                      # no dtype: the source's
    record = provenance.read(converted)
    assert (record["dtype"], record["source_dtype"]) == ("fp32", "fp32")
    out = export_hf(converted, tmp_path / "out")
    assert _stored_dtypes(out) == {"F32"}
    from safetensors.torch import load_file
    original, exported = load_file(hf / "model.safetensors"), load_file(out / "model.safetensors")
    key = "embeddings.word_embeddings.weight"
    assert torch.equal(original[key], exported[key])                # bit-exact, not a bf16 trip


def test_default_import_of_bf16_weights_stays_bf16_and_a_cast_is_recorded(tmp_path, megatron_runtime):
    hf = write_hf_model(tmp_path / "hf", "labse")
    _to_bf16(hf)
    converted = import_hf(hf, tmp_path / "meg")
    assert (provenance.read(converted)["dtype"], provenance.read(converted)["source_dtype"]) == (
        "bf16", "bf16")
    assert _stored_dtypes(export_hf(converted, tmp_path / "out")) == {"BF16"}
    cast = import_hf(hf, tmp_path / "meg32", dtype="fp32")           # a deliberate cast
    assert (provenance.read(cast)["dtype"], provenance.read(cast)["source_dtype"]) == ("fp32", "bf16")
    assert _stored_dtypes(export_hf(cast, tmp_path / "out32")) == {"F32"}


def test_cli_default_is_the_source_dtype(tmp_path, megatron_runtime):
    hf = write_hf_model(tmp_path / "hf", "labse")
    assert load_tool("convert_hf_to_megatron")(["--hf", str(hf), "--output", str(tmp_path / "c")]) == 0
    assert provenance.read(tmp_path / "c")["dtype"] == "fp32"


def _no_tokenizer_recorded(converted):
    record = provenance.read(converted)
    record.pop("tokenizer")
    provenance.write(converted, record)


def test_export_never_takes_the_working_directory_tokenizer(tmp_path, monkeypatch, capsys,
                                                            megatron_runtime):
    hf = write_hf_model(tmp_path / "hf", "labse")
    converted = import_hf(hf, tmp_path / "meg")
    _no_tokenizer_recorded(converted)
    export = load_tool("export_to_hf")
    monkeypatch.chdir(hf)                          # a folder holding some tokenizer.json
    rc = export(["--checkpoint", str(converted), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and not (tmp_path / "out").exists()
    assert f"{converted}: records no tokenizer" in err and "pass --tokenizer" in err
    # given explicitly, the same tokenizer is fine
    assert export(["--checkpoint", str(converted), "--output", str(tmp_path / "out"),
                   "--tokenizer", str(hf)]) == 0


def test_export_refuses_a_tokenizer_larger_than_the_embedding(tmp_path, megatron_runtime):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    hf = write_hf_model(tmp_path / "hf", "labse")
    converted = import_hf(hf, tmp_path / "meg")
    words = WORDS + [f"extra{i}" for i in range(40)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>",
                            unk_token="<unk>").save_pretrained(str(tmp_path / "big"))
    with pytest.raises(ConversionError, match=rf"tokenizer {tmp_path / 'big'}: {len(words)} tokens, "
                                              rf"but .* has {len(WORDS)} embedding rows"):
        export_hf(converted, tmp_path / "out", tokenizer=tmp_path / "big")
    assert not (tmp_path / "out").exists()


def test_a_given_tokenizer_folder_without_files_is_named(tmp_path, megatron_runtime):
    hf = write_hf_model(tmp_path / "hf", "labse")
    converted = import_hf(hf, tmp_path / "meg")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConversionError, match=r"tokenizer .*empty \(from --tokenizer\): no "
                                              r"tokenizer.json"):
        export_hf(converted, tmp_path / "out", tokenizer=tmp_path / "empty")
