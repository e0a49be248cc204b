"""A run's config as training and ``--dry-run`` use it: the YAML + overrides (``config/``), then,
with ``checkpoint.init_from``, the model section taken from that checkpoint.

Why it exists: resolving ``init_from`` reads a checkpoint (``checkpointing/folders``), which the
config layer must not import; and it must happen once, by one rule, for the dry run and the
trainer alike. The rule (``run_identity.init_model``): the checkpoint's model section, with the
fields in ``INIT_OVERRIDABLE`` taken from the config where the user wrote them; another written
field that differs from the checkpoint stops the load, listed.

What it does not do: check the data or the run directory (``run_identity``), or load weights.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

from megatron_hybridir.config import ConfigError, RunConfig, build_config, read_config, validate
from megatron_hybridir.training.run_identity import ModelSectionMismatch, init_model


def load_run_config(path: str | Path | None = None,
                    overrides: Optional[list[str]] = None) -> RunConfig:
    """A run's config from YAML (optional) and ``a.b=value`` overrides, with ``init_from``
    resolved (the fields written in the YAML and overrides count as the user's) and validated."""
    data = read_config(path, overrides)
    config = build_config(data, check=False)
    return resolve_init_from(config, written=data.get("model", {}))


def resolve_init_from(config: RunConfig, *, written: Optional[dict] = None) -> RunConfig:
    """``config`` with its model section from ``checkpoint.init_from``, validated. ``written``:
    the model fields the user set; None (a config built in code) counts every field as set.
    A recipe whose checkpoint is not there yet keeps its own model section (so ``--dry-run``
    works before conversion); the trainer then stops naming the missing folder. Resolving a
    resolved config changes nothing."""
    init_from = config.checkpoint.init_from
    if init_from and Path(init_from).exists():
        config = dataclasses.replace(config, model=init_model(init_from, config.model, written))
    validate(config)
    return config


def check_resolved(config: RunConfig) -> None:
    """The trainer's guard: with ``init_from``, the model section must already be that
    checkpoint's (``resolve_init_from`` leaves such a config unchanged, and so does this check);
    it raises naming the fields that differ, and the folder when it is missing or a LoRA run."""
    if not config.checkpoint.init_from:
        return
    try:
        init_model(config.checkpoint.init_from, config.model)
    except ModelSectionMismatch as err:
        raise ModelSectionMismatch(
            f"{err}. (A config naming checkpoint.init_from is resolved before training: load it "
            f"with training.run_config.load_run_config, or pass one built in code through "
            f"resolve_init_from)") from None
