"""``checkpoint.init_from`` is resolved once, in the run layer (issue 27): ``load_run_config`` takes
the model section from the checkpoint for ``--dry-run`` and training alike, the config layer does
not read checkpoints, and the trainer only checks that its config was resolved."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from megatron_hybridir import train as train_cli
from megatron_hybridir.config import ConfigError, load_config
from megatron_hybridir.config.presets import preset
from megatron_hybridir.model.builder import count_parameters
from megatron_hybridir.training.run_config import (check_resolved, load_run_config,
                                                   resolve_init_from)
from megatron_hybridir.training.run_identity import ModelSectionMismatch


@pytest.fixture
def converted(tmp_path):
    """A converted folder's model section (what ``resolve_checkpoint`` reads): tiny, 3 layers."""
    (tmp_path / "model.yaml").write_text(yaml.safe_dump(dataclasses.asdict(
        preset("tiny", num_layers=3, hidden_size=32, ffn_hidden_size=96))))
    return tmp_path


def test_the_model_section_comes_from_init_from(converted):
    overrides = [f"checkpoint.init_from={converted}", "model.pooling=last", "seq_length=32"]
    config = load_run_config(None, overrides)
    assert (config.model.num_layers, config.model.hidden_size) == (3, 32)
    assert config.model.pooling == "last"                # INIT_OVERRIDABLE: the config's
    # The config layer alone reads no checkpoint: the model section is the YAML's.
    assert load_config(None, overrides).model.num_layers == 2
    # Resolving a resolved config changes nothing; the trainer's check passes.
    assert resolve_init_from(config) == config
    check_resolved(config)


def test_written_fields_that_differ_from_the_checkpoint_are_refused(converted):
    with pytest.raises(ModelSectionMismatch, match=r"fields differ from it \(checkpoint -> "
                                                   r"config\): model.num_layers: 3 -> 5"):
        load_run_config(None, [f"checkpoint.init_from={converted}", "model.num_layers=5"])


def test_the_trainer_refuses_a_config_that_was_not_resolved(converted):
    unresolved = load_config(None, [f"checkpoint.init_from={converted}"])
    with pytest.raises(ConfigError, match=r"model.num_layers: 3 -> 2; model.hidden_size: 32 -> 64"
                                          r".*load it with training.run_config.load_run_config"):
        check_resolved(unresolved)


def test_dry_run_uses_the_resolved_model(converted, capsys):
    args = [f"checkpoint.init_from={converted}", "seq_length=32"]
    assert train_cli.main(["--dry-run", *args]) == 0
    params = count_parameters(load_run_config(None, args).model)
    expected = preset("tiny", num_layers=3, hidden_size=32, ffn_hidden_size=96)
    assert params == count_parameters(expected) != count_parameters(preset("tiny"))
    assert f"parameters: {params / 1e9:.2f} B total" in capsys.readouterr().out
