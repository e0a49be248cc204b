"""``load_eval_config``: an :class:`~megatron_hybridir.evaluation.runner.EvalConfig` from an
optional YAML file and ``key=value`` overrides.

Why it exists: the evaluation CLI (``megatron_hybridir/evaluate.py``), the demo and the benchmarks
build evaluation settings the same way, validated by the same typed loader as training configs;
none of them should import the CLI module for it. What it does not do: run an evaluation
(``runner.evaluate``) or parse a command line.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from megatron_hybridir.config import apply_overrides, from_dict
from megatron_hybridir.evaluation.config import EvalConfig


def load_eval_config(path: str | Path | None, overrides: list[str]) -> EvalConfig:
    """The EvalConfig of YAML file ``path`` (None: all defaults) with dotted ``overrides`` applied."""
    data = (yaml.safe_load(Path(path).read_text()) or {}) if path else {}
    return from_dict(EvalConfig, apply_overrides(data, overrides))
