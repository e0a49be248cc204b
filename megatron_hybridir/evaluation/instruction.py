"""Which task instruction an evaluation puts on its queries, and the query prompt it becomes.

Why it exists: a model trained with instructions (``Instruct: {task}\\nQuery: {text}``) must be
evaluated with one, each benchmark with its own: BEIR datasets, NQ, MIRACL, XQuAD-R and MLQA-R
have documented defaults (``config/instructions.py``, README "Task instructions"). ``instruction``
is off by default (the query prompt is the model's, as before), ``"default"`` picks the documented
one for the benchmark (for BEIR: the dataset named by ``data``'s last path part), any other string
is the instruction itself. Passages never get one. What it does not do: encode (``encoder.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

from megatron_hybridir.config import ConfigError
from megatron_hybridir.config.instructions import TASK_INSTRUCTIONS, instruction_prompt

if TYPE_CHECKING:
    from megatron_hybridir.evaluation.config import EvalConfig

DEFAULT = "default"


def task_key(config: "EvalConfig") -> str:
    """The key of ``TASK_INSTRUCTIONS`` for this run: the BEIR dataset name, else the benchmark."""
    if config.benchmark == "beir":
        return Path(config.data.rstrip("/")).name.lower()
    return config.benchmark


def resolve(config: "EvalConfig") -> Optional[dict]:
    """{"task", "instruction", "template", "query_prompt"} for results.json, or None (no
    instruction). Raises :class:`ConfigError` naming the field on a bad setting."""
    if config.instruction is None:
        return None
    if config.encoder.query_prompt is not None:
        raise ConfigError(f"instruction and encoder.query_prompt both set the query prompt "
                          f"({config.instruction!r}, {config.encoder.query_prompt!r}); set one")
    key = task_key(config)
    text = config.instruction
    if text == DEFAULT:
        if key not in TASK_INSTRUCTIONS:
            beir = sorted(k for k, (_, __) in TASK_INSTRUCTIONS.items()
                          if k not in ("nq", "miracl", "xquad-r", "mlqa-r", "lareqa"))
            raise ConfigError(f"instruction: no documented default for BEIR dataset {key!r} "
                              f"(from data={config.data!r}; defaults exist for {beir}); set "
                              f"instruction= to the instruction text")
        text = TASK_INSTRUCTIONS[key][1]
    try:
        prompt = instruction_prompt(text, config.instruction_template, field="instruction")
    except ValueError as err:
        raise ConfigError(str(err)) from None
    return {"task": key, "instruction": text, "template": config.instruction_template,
            "query_prompt": prompt}
