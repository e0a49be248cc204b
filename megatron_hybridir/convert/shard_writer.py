"""Streaming safetensors shards: tensors go to disk as they come, in shards of a byte budget.

Why it exists: an export must not hold the model in memory; the reader yields one layer at a time
and this writer keeps at most one shard's tensors. A shard is closed once it reaches
``max_shard_bytes`` (so a shard may exceed it by the last tensors added); one shard is written as
``model.safetensors``, several as ``model-0000N.safetensors`` with the ``model.safetensors.index.json``
transformers reads.

What it does not do: choose names or dtypes (the caller hands it HF names and cast tensors).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch


class ShardWriter:
    """``add`` tensors (one call per group that must stay in one shard), then ``close``."""

    def __init__(self, folder: Path, max_shard_bytes: int):
        self.folder, self.max_shard_bytes = Path(folder), max_shard_bytes
        self.shard: dict[str, torch.Tensor] = {}
        self.shard_bytes = 0
        self.weight_map: dict[str, str] = {}
        self.files: list[str] = []

    def add(self, tensors: dict[str, torch.Tensor]) -> None:
        """Add ``tensors`` to the open shard; write it out once it holds ``max_shard_bytes``."""
        for name, tensor in tensors.items():
            self.shard[name] = tensor.contiguous()
            self.shard_bytes += tensor.numel() * tensor.element_size()
        if self.shard_bytes >= self.max_shard_bytes:
            self._flush()

    def _flush(self) -> None:
        from safetensors.torch import save_file

        if self.shard:
            name = f"model-{len(self.files) + 1:05d}.safetensors"
            save_file(self.shard, self.folder / name, metadata={"format": "pt"})
            self.weight_map.update({k: name for k in self.shard})
            self.files.append(name)
            self.shard, self.shard_bytes = {}, 0

    def close(self) -> list[str]:
        """Write the last shard and the index (or rename a single shard); the files written."""
        self._flush()
        if len(self.files) == 1:
            (self.folder / self.files[0]).rename(self.folder / "model.safetensors")
            return ["model.safetensors"]
        (self.folder / "model.safetensors.index.json").write_text(json.dumps(
            {"metadata": {}, "weight_map": self.weight_map}, indent=2))
        return [*self.files, "model.safetensors.index.json"]
