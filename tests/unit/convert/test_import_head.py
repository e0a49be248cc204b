"""The import's head settings are one frozen ``ImportHead``: a misspelt field fails where it is
written (naming it), each field feeds the ``ModelConfig`` field of its name, and ``import_hf`` takes
nothing else for the head (no loose keyword arguments)."""

from __future__ import annotations

import dataclasses

import pytest

from megatron_hybridir.config import ModelConfig
from megatron_hybridir.convert.hf_import import ImportHead, import_hf


def test_unknown_field_is_named_and_the_settings_are_frozen():
    with pytest.raises(TypeError, match="unexpected keyword argument 'poolng'"):
        ImportHead(poolng="mean")
    head = ImportHead(pooling="mean")
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'pooling'"):
        head.pooling = "first"


def test_fields_are_model_config_fields_and_only_chosen_ones_are_passed():
    model_fields = {f.name for f in dataclasses.fields(ModelConfig)}
    assert {f.name for f in dataclasses.fields(ImportHead)} <= model_fields
    assert ImportHead().chosen() == {}
    head = ImportHead(pooling="first", pooler=True, normalize=False)
    assert head.chosen() == {"pooling": "first", "pooler": True, "normalize": False}
    model = ModelConfig(**head.chosen())
    assert (model.pooling, model.pooler, model.normalize) == ("first", True, False)


def test_import_hf_takes_the_head_only_as_import_head(tmp_path):
    with pytest.raises(TypeError, match="unexpected keyword argument 'pooling'"):
        import_hf(tmp_path / "hf", tmp_path / "out", pooling="mean")
    with pytest.raises(TypeError, match=r"import_hf: head must be an ImportHead, got dict "
                                        r"\{'pooling': 'mean'\}"):
        import_hf(tmp_path / "hf", tmp_path / "out", head={"pooling": "mean"})
