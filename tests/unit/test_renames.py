"""Renamed names still work, with a deprecation message (issue 27: one word per concept):
``model.architecture`` (a layer kind) is ``model.layer_kind``; ``tools/export_to_hf.py
--architecture`` (a family name) is ``--family``."""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import yaml

from megatron_hybridir.checkpointing.folders import resolve_checkpoint
from megatron_hybridir.config import ConfigError, ModelConfig, RunConfig, from_dict, load_config
from megatron_hybridir.config.presets import preset
from tests.unit.convert.hf_fixtures import load_tool

BERT = ["model.num_query_groups=null", "model.type_vocab_size=2", "model.max_position_embeddings=64"]


def test_old_yaml_key_loads_as_layer_kind_with_a_deprecation_message(tmp_path):
    old = tmp_path / "old.yaml"
    old.write_text("model:\n  preset: tiny\n  architecture: bert\n")
    with pytest.warns(FutureWarning, match=r"model.architecture is deprecated and will be "
                                           r"removed: it is now model.layer_kind"):
        config = load_config(old, BERT)
    # The written value wins over the preset's layer kind, exactly as under the new name.
    assert config.model.layer_kind == "bert"
    assert config == load_config(None, ["model.preset=tiny", "model.layer_kind=bert", *BERT])
    with pytest.warns(FutureWarning, match="model.architecture is deprecated"):
        assert load_config(None, ["model.architecture=bert", *BERT]).model.layer_kind == "bert"


def test_the_new_key_loads_without_a_message():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_config(None, ["model.layer_kind=bert", *BERT]).model.layer_kind == "bert"


def test_old_and_new_key_together_are_refused():
    with pytest.raises(ConfigError, match=r"model.architecture is the old name of "
                                          r"model.layer_kind, and both are set \(architecture="
                                          r"'bert', layer_kind='llama'\); remove model.architecture"):
        load_config(None, ["model.architecture=bert", "model.layer_kind=llama"])


def test_configs_written_by_older_runs_still_load(tmp_path):
    """A run directory's config.yaml and a converted folder's model.yaml hold the old key."""
    model = dataclasses.asdict(preset("tiny", layer_kind="bert", num_query_groups=None,
                                      type_vocab_size=2))
    old = {("architecture" if k == "layer_kind" else k): v for k, v in model.items()}
    with pytest.warns(FutureWarning, match="model.architecture is deprecated"):
        run = from_dict(RunConfig, {"model": old})
    assert run.model == ModelConfig(**model)
    (tmp_path / "model.yaml").write_text(yaml.safe_dump(old))
    with pytest.warns(FutureWarning, match="architecture is deprecated"):
        assert resolve_checkpoint(tmp_path)[0] == ModelConfig(**model)


@pytest.mark.parametrize("flag", ["--family", "--architecture"])
def test_export_family_flag_and_its_old_name(monkeypatch, capsys, flag):
    main = load_tool("export_to_hf")
    calls = []
    monkeypatch.setitem(main.__globals__, "export_hf", lambda *a, **kw: calls.append(a[2]) or "out")
    assert main(["--checkpoint", "ckpt", "--output", "out", flag, "mistral"]) == 0
    assert calls[0].family == "mistral"
    deprecated = "warning: --architecture is deprecated and will be removed; use --family mistral"
    assert (deprecated in capsys.readouterr().err) == (flag == "--architecture")


def test_export_refuses_both_family_flags(monkeypatch, capsys):
    main = load_tool("export_to_hf")
    monkeypatch.setitem(main.__globals__, "export_hf", lambda *a, **kw: pytest.fail("exported"))
    with pytest.raises(SystemExit):
        main(["--checkpoint", "c", "--output", "o", "--family", "qwen2", "--architecture", "qwen2"])
    assert "--architecture is the old name of --family; give only --family" in capsys.readouterr().err
