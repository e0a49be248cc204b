"""Conversion outputs: a failed --verify leaves nothing, --overwrite deletes only our own folders."""

import pytest

from megatron_hybridir.convert.hf_export import export_hf
from megatron_hybridir.convert.hf_import import import_hf
from megatron_hybridir.convert.mappings import ConversionError
from tests.unit.convert.hf_fixtures import write_hf_model


@pytest.fixture
def failing_verify(monkeypatch):
    from megatron_hybridir.convert import verify

    def fail(*args, **kwargs):
        raise ConversionError("verification failed: hidden states differ by 1.00e+00")
    monkeypatch.setattr(verify, "verify_import", fail)
    monkeypatch.setattr(verify, "verify_export", fail)


def test_failed_import_verification_leaves_nothing(tmp_path, megatron_runtime, failing_verify):
    hf = write_hf_model(tmp_path / "hf", "llama")
    with pytest.raises(ConversionError, match="verification failed"):
        import_hf(hf, tmp_path / "out", dtype="fp32", verify=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]


def test_failed_export_verification_leaves_nothing(tmp_path, megatron_runtime, failing_verify):
    converted = import_hf(write_hf_model(tmp_path / "hf", "qwen2"), tmp_path / "meg", dtype="fp32")
    with pytest.raises(ConversionError, match="verification failed"):
        export_hf(converted, tmp_path / "out", verify=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf", "meg"]


def test_overwrite_refuses_a_folder_that_holds_no_model(tmp_path, megatron_runtime):
    hf = write_hf_model(tmp_path / "hf", "llama")
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.tex").write_text("years of work")
    with pytest.raises(ConversionError) as err:
        import_hf(hf, precious, dtype="fp32", overwrite=True)
    assert str(err.value) == (f"--overwrite: {precious} does not hold a converted checkpoint "
                              f"(expected model.yaml and checkpoint in it); not deleting it. Choose "
                              f"another output or remove it yourself")
    converted = import_hf(hf, tmp_path / "meg", dtype="fp32")
    with pytest.raises(ConversionError, match="does not hold a Hugging Face export .expected "
                                              "config.json and modules.json"):
        export_hf(converted, precious, overwrite=True)
    assert (precious / "chapter1.tex").read_text() == "years of work"
    # Our own outputs are replaced.
    import_hf(hf, tmp_path / "meg", dtype="fp32", overwrite=True)
    export_hf(converted, tmp_path / "out")
    export_hf(converted, tmp_path / "out", overwrite=True)
