"""Where a run's first weights come from, and the rule that a public architecture starts from them.

Why it exists: ``model.preset: mistral-7b`` builds Mistral-7B's architecture; without
``checkpoint.init_from`` the trainer used to initialise it randomly and train a 7B model from
scratch without a word. Now a preset that names a public checkpoint (every LLM and encoder preset,
``model/families.py``) trains only from ``checkpoint.init_from`` or with ``checkpoint.init: random``
stated; otherwise the launch stops before any process group exists, naming the config file and the
conversion command (``tools/convert_hf_to_megatron.py``, with the preset's Hugging Face model).
``--dry-run`` prints where the weights come from (``describe``).

What it does not do: load weights (``checkpointing/model_state``) or merge the checkpoint's model
section into the config (``training/run_config.load_run_config``). Plain data only: the checks read the
config and the preset table, and whether the ``init_from`` folder exists.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Optional

from megatron_hybridir.config.presets import PRETRAINED
from megatron_hybridir.config.schema import ConfigError, RunConfig


def default_init_dir(preset: str) -> str:
    """Where the recipes expect the converted weights of ``preset`` (relative to the repository)."""
    return f"checkpoints/{preset}-megatron"


def conversion_command(config: RunConfig, *, output: Optional[str] = None) -> str:
    """The commands that make ``checkpoint.init_from`` for this config's preset: a local copy of
    the public checkpoint, converted at the run's tensor / pipeline parallel sizes and dtype."""
    preset = config.model.preset
    hub = PRETRAINED[preset]
    local = f"hf/{hub}"
    p = config.parallel
    args = ["python", "tools/convert_hf_to_megatron.py", "--hf", local,
            "--output", output or config.checkpoint.init_from or default_init_dir(preset),
            "--tensor-parallel", str(p.tensor_model_parallel_size)]
    if p.pipeline_model_parallel_size > 1:
        args += ["--pipeline-parallel", str(p.pipeline_model_parallel_size)]
    args += ["--dtype", config.precision.dtype]
    return (f"hf download {hub} --local-dir {shlex.quote(local)}\n"
            f"    {' '.join(shlex.quote(a) for a in args)}")


def check_initial_weights(config: RunConfig, *, source: Optional[str] = None) -> None:
    """Stop a launch that would train a public architecture from random weights by accident, or
    that names both a checkpoint and random initialisation. ``source``: the config file, named in
    the message."""
    where = f"{source}: " if source else ""
    ckpt, preset = config.checkpoint, config.model.preset
    if ckpt.init == "random":
        if ckpt.init_from:
            raise ConfigError(f"{where}checkpoint.init: random contradicts checkpoint.init_from="
                              f"{ckpt.init_from}; remove one of them")
        return
    if ckpt.init_from or preset not in PRETRAINED:
        return
    out = default_init_dir(preset)
    raise ConfigError(
        f"{where}model.preset={preset} is the architecture of {PRETRAINED[preset]}, but "
        f"checkpoint.init_from is not set: training would start from random weights. Convert the "
        f"public weights first:\n    {conversion_command(config, output=out)}\n"
        f"then set checkpoint.init_from={out}; or set checkpoint.init=random to train this "
        f"architecture from scratch on purpose")


def describe(config: RunConfig) -> str:
    """One line for ``--dry-run``: where this run's weights come from."""
    ckpt, model = config.checkpoint, config.model
    if ckpt.init_from:
        if Path(ckpt.init_from).exists():
            return f"checkpoint.init_from={ckpt.init_from}"
        make = (f"; make it with:\n    {conversion_command(config)}"
                if model.preset in PRETRAINED else "")
        return f"checkpoint.init_from={ckpt.init_from} (not there yet{make})"
    why = ("checkpoint.init=random" if ckpt.init == "random"
           else "no public checkpoint for this architecture")
    return f"random initialisation, std {model.init_method_std:g} ({why})"
