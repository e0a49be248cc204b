"""What a finished run directory says about itself: parameters, steps and training FLOPs.

Why it exists: the demo pipeline, the CPU study's cells and the Slurm study's ``annotate`` step all
stamp an evaluation's ``results.json`` with these figures for the scaling report; reading them is a
property of the run directory (``config.yaml`` + ``metrics.jsonl``), so it lives beside the trainer
that writes them, below both the demo and the study. What it does not do: aggregate runs
(``study.scaling``).
"""

from __future__ import annotations

import json
from pathlib import Path


def run_info(run_dir: Path) -> dict:
    """Parameters and training FLOPs of a run (for the scaling report)."""
    import yaml

    from megatron_hybridir.config import ModelConfig, from_dict
    from megatron_hybridir.model.builder import count_parameters
    from megatron_hybridir.training.flops import training_flops

    config_file = run_dir / "config.yaml"
    if not config_file.exists():
        return {}
    run = yaml.safe_load(config_file.read_text())
    model = from_dict(ModelConfig, run["model"])
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = rows[-1]["step"] if rows else 0
    sequences = run["data"]["global_batch_size"] * (2 + run["loss"]["num_hard_negatives"])
    flops = steps * training_flops(model, sequences=sequences, seq_len=run["seq_length"],
                                   gradcache=run["training"]["gradcache"])
    return {"parameters": count_parameters(model), "train_steps": steps, "train_flops": flops,
            "alpha": run["data"]["alpha"], "seed": run["seed"], "hidden_size": model.hidden_size,
            "num_layers": model.num_layers}
