"""Which model and distributed checkpoint a path names: a run directory, one of its
``checkpoints/step_N`` folders, or a folder written by ``convert_hf_to_megatron``.

Why it exists: ``checkpoint.init_from``, the LoRA base, export and ``--verify`` all accept any of
the three, and must agree on what each means. What it does not do: load tensors (``model_state``)
or verify checksums (``checksums``).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from megatron_hybridir.checkpointing import provenance
from megatron_hybridir.checkpointing.errors import CheckpointError
from megatron_hybridir.checkpointing.safe_metadata import check_metadata
from megatron_hybridir.config import ModelConfig, from_dict


def resolve_checkpoint(path: str | Path) -> tuple[ModelConfig, Path, dict]:
    """(model config, dist-checkpoint folder, extra info) from a run directory, one of its
    ``checkpoints/step_N`` folders, or a folder written by ``convert_hf_to_megatron``.

    ``info["provenance"]`` is the folder's ``provenance.json`` (None for folders written before it
    existed) and ``info["folder"]`` the folder holding it (its ``tokenizer/`` is relative to it)."""
    path = Path(path)
    if (path / "model.yaml").exists():                       # converted from HF
        model = from_dict(ModelConfig, yaml.safe_load((path / "model.yaml").read_text()))
        check_metadata(path / "checkpoint")
        return model, path / "checkpoint", {"provenance": provenance.read(path), "folder": path}
    run_dir, ckpt = path, None
    if path.name.startswith("step_"):
        run_dir, ckpt = path.parent.parent, path
    config_file = run_dir / "config.yaml"
    if not config_file.exists():
        raise CheckpointError(f"{path}: not a run directory (no config.yaml), a checkpoint step, or a "
                              f"converted folder (no model.yaml)")
    run = yaml.safe_load(config_file.read_text())
    model = from_dict(ModelConfig, run["model"])
    if ckpt is None:
        pointer = run_dir / "checkpoints" / "latest"
        if not pointer.exists():
            raise CheckpointError(f"{run_dir}: no checkpoints/latest")
        ckpt = run_dir / "checkpoints" / f"step_{int(pointer.read_text()):08d}"
    if not (ckpt / "metadata.json").exists():
        raise CheckpointError(f"{ckpt}: not a complete distributed checkpoint (no metadata.json)")
    check_metadata(ckpt)        # torch unpickles .metadata on load: refuse a crafted one first
    info = {"seq_length": run.get("seq_length"), "data": run.get("data", {}),
            "provenance": provenance.read(run_dir), "folder": run_dir}
    return model, ckpt, info
