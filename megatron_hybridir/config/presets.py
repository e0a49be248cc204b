"""Named architecture presets (sizes of public checkpoints), applied under explicit config fields.

Why it exists: a 7B or 30B recipe should say ``model.preset: mistral-7b`` rather than copy a dozen
numbers, and tests need the ``tiny`` preset (2 layers, hidden 64). The values are plain data kept
with each family in the family registry (``model/families.py``, which imports nothing of the
config), so loading a config reads them without an import cycle; the HF import (checkpoint
conversion) reads the real ``config.json`` instead.

What it does not do: validate the result (``config/validation.py`` does, after loading).
"""

from __future__ import annotations

import dataclasses

from megatron_hybridir.config.schema import ConfigError, ModelConfig
from megatron_hybridir.model.families import all_presets, pretrained_checkpoints

# Preset name -> ModelConfig values; "tiny" is for tests / demos.
PRESETS: dict[str, dict] = all_presets()
# Preset name -> Hugging Face Hub id of the public weights a run of it starts from
# (config/initial_weights.py); every preset but "tiny".
PRETRAINED: dict[str, str] = pretrained_checkpoints()


def apply_preset(model: ModelConfig, explicit: dict) -> ModelConfig:
    """Return ``model`` with the preset's values for every field the user did not set."""
    if model.preset not in PRESETS:
        raise ConfigError(f"model.preset: unknown preset {model.preset!r}; "
                          f"known: {sorted(PRESETS)}")
    values = {k: v for k, v in PRESETS[model.preset].items() if k not in explicit}
    return dataclasses.replace(model, **values)


def preset(name: str, **overrides) -> ModelConfig:
    """A ModelConfig from a preset with keyword overrides (for tests and tools)."""
    return apply_preset(ModelConfig(preset=name, **overrides), overrides)
