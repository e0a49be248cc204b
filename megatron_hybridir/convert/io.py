"""Reading checkpoint folders and writing outputs atomically.

A conversion writes into ``<output>.tmp-<pid>`` and renames it into place only when complete, so a
failure never leaves a half-written model where a user (or a later job) would load it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Iterator, Optional

import yaml

from megatron_hybridir.config import ModelConfig, from_dict
from megatron_hybridir.convert.mappings import ConversionError


# What --overwrite may replace: a folder this package wrote (name -> files that identify it).
OURS = {"converted checkpoint": ("model.yaml", "checkpoint"),
        "Hugging Face export": ("config.json", "modules.json")}


def check_replaceable(output: Path, kind: str) -> None:
    """Refuse to delete ``output`` unless it holds a ``kind`` folder (``OURS``)."""
    expected = OURS[kind]
    if output.is_file() or not all((output / name).exists() for name in expected):
        raise ConversionError(f"--overwrite: {output} does not hold a {kind} (expected "
                              f"{' and '.join(expected)} in it); not deleting it. Choose another "
                              f"output or remove it yourself")


@contextlib.contextmanager
def atomic_folder(output: Path, overwrite: bool = False, kind: Optional[str] = None) -> Iterator[Path]:
    """A temporary folder renamed to ``output`` when the block completes (raises: removed).
    Verification belongs inside the block, so a failed check leaves nothing at ``output``."""
    output = Path(output)
    if output.exists() and not overwrite:
        raise ConversionError(f"{output} exists; choose another output or pass --overwrite")
    if output.exists() and kind is not None:
        check_replaceable(output, kind)
    tmp = output.with_name(f"{output.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if output.exists():
        shutil.rmtree(output)
    os.replace(tmp, output)


def read_json(path: Path, what: str) -> dict:
    if not path.exists():
        raise ConversionError(f"{path.parent}: missing {path.name} ({what})")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConversionError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None


def resolve_checkpoint(path: str | Path) -> tuple[ModelConfig, Path, dict]:
    """(model config, dist-checkpoint folder, extra info) from a run directory, one of its
    ``checkpoints/step_N`` folders, or a folder written by ``convert_hf_to_megatron``.

    ``info["provenance"]`` is the folder's ``provenance.json`` (None for folders written before it
    existed) and ``info["folder"]`` the folder holding it (its ``tokenizer/`` is relative to it)."""
    from megatron_hybridir.convert import provenance

    path = Path(path)
    if (path / "model.yaml").exists():                       # converted from HF
        model = from_dict(ModelConfig, yaml.safe_load((path / "model.yaml").read_text()))
        return model, path / "checkpoint", {"provenance": provenance.read(path), "folder": path}
    run_dir, ckpt = path, None
    if path.name.startswith("step_"):
        run_dir, ckpt = path.parent.parent, path
    config_file = run_dir / "config.yaml"
    if not config_file.exists():
        raise ConversionError(f"{path}: not a run directory (no config.yaml), a checkpoint step, or a "
                              f"converted folder (no model.yaml)")
    run = yaml.safe_load(config_file.read_text())
    model = from_dict(ModelConfig, run["model"])
    if ckpt is None:
        pointer = run_dir / "checkpoints" / "latest"
        if not pointer.exists():
            raise ConversionError(f"{run_dir}: no checkpoints/latest")
        ckpt = run_dir / "checkpoints" / f"step_{int(pointer.read_text()):08d}"
    if not (ckpt / "metadata.json").exists():
        raise ConversionError(f"{ckpt}: not a complete distributed checkpoint (no metadata.json)")
    info = {"seq_length": run.get("seq_length"), "data": run.get("data", {}),
            "provenance": provenance.read(run_dir), "folder": run_dir}
    return model, ckpt, info
