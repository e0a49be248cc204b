"""Reading a Megatron-Core ``torch_dist`` checkpoint one tensor (or one layer) at a time, by the
local TP=1 state-dict names the rest of the package speaks (``decoder.layers.3.mlp.linear_fc1.weight``).

Why it exists: export, merging and verification read checkpoints of any size and any TP / PP layout
without building the model. Megatron-Core stores each stacked layer tensor as one chunk per layer,
so PyTorch DCP with a planner that requests one chunk reads one layer's slice; the names come from a
one-layer skeleton's sharded state dict, so they follow Megatron's own naming. Peak memory is the
tensors being read, not the model.

What it does not do: merge LoRA adapters (``lora_merge.MergedReader`` wraps this reader the same
way) or know about HF names (``adapter``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterator, Optional

import torch

from megatron_hybridir.config import ModelConfig, ParallelConfig
from megatron_hybridir.convert.mappings import ConversionError

LAYERS = "decoder.layers."


class CheckpointReader:
    """Reads single tensors, or one layer's slice of a stacked layer tensor, from a Megatron-Core
    ``torch_dist`` checkpoint through PyTorch DCP with a planner that asks for just that chunk."""

    def __init__(self, ckpt: Path):
        from torch.distributed.checkpoint import FileSystemReader

        self.path = ckpt
        self.reader = FileSystemReader(str(ckpt))
        self.metadata = self.reader.read_metadata().state_dict_metadata

    def shape(self, key: str) -> tuple[int, ...]:
        if key not in self.metadata:
            raise ConversionError(f"{self.path}: no tensor {key} (not an embedding-model checkpoint?)")
        return tuple(self.metadata[key].size)

    def read(self, key: str, layer: Optional[int] = None) -> torch.Tensor:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
        from torch.distributed.checkpoint.metadata import ChunkStorageMetadata
        from torch.distributed.checkpoint.planner import LoadPlan
        from torch.distributed.checkpoint.planner_helpers import create_read_items_for_chunk_list

        shape = self.shape(key)
        sizes = shape if layer is None else (1, *shape[1:])
        offsets = (0,) * len(shape) if layer is None else (layer, *(0,) * (len(shape) - 1))
        chunk = ChunkStorageMetadata(offsets=torch.Size(offsets), sizes=torch.Size(sizes))
        target = torch.empty(sizes, dtype=self.metadata[key].properties.dtype)

        class OneChunk(DefaultLoadPlanner):
            def create_local_plan(self):
                return LoadPlan(create_read_items_for_chunk_list(key, self.metadata.state_dict_metadata[key],
                                                                 [chunk]))

            def lookup_tensor(self, index):       # dest offsets are relative to our one chunk
                return target

        dcp.load({key: target}, storage_reader=self.reader, planner=OneChunk(), no_dist=True)
        return target if layer is None else target[0]


def checkpoint_keys(model: ModelConfig) -> dict[str, str]:
    """Local (TP=1) state-dict name of layer 0 / globals -> key in the distributed checkpoint,
    read off a one-layer skeleton's sharded state dict (so it follows Megatron's own naming)."""
    from megatron_hybridir.model.builder import build_model
    from megatron_hybridir.runtime.distributed import ensure_runtime

    ensure_runtime()
    one = dataclasses.replace(model, num_layers=1, vocab_size=8)
    with torch.device("meta"):               # names only: no storage for a 30B-wide layer
        skeleton = build_model(one, ParallelConfig(), vocab_rows=8)
    return {name: getattr(value, "key") for name, value in skeleton.sharded_state_dict().items()
            if not name.endswith("_extra_state") and hasattr(value, "key")}


def local_key(keys: dict[str, str], name: str) -> tuple[str, Optional[int]]:
    """(checkpoint key, layer or None) of the local TP=1 name ``name`` (``decoder.layers.3.x`` is
    layer 3 of the stacked key of ``decoder.layers.0.x``), given :func:`checkpoint_keys`."""
    if name.startswith(LAYERS):
        _, _, i, rest = name.split(".", 3)
        template = f"{LAYERS}0.{rest}"
        if template in keys:
            return keys[template], int(i)
    elif name in keys:
        return keys[name], None
    raise ConversionError(f"no checkpoint key for tensor {name} in this model's layout")


class MegatronTensors:
    """A checkpoint's tensors by local name: one at a time in any order (:meth:`read`, what
    merging needs), or in groups (:meth:`groups`: the globals, then each layer in turn; what
    export streams)."""

    def __init__(self, model: ModelConfig, ckpt: Path):
        self.num_layers = model.num_layers
        self.reader = CheckpointReader(ckpt)
        self.keys = checkpoint_keys(model)

    def names(self) -> list[str]:
        """Local names of the globals and of layer 0's tensors."""
        return list(self.keys)

    def read(self, name: str) -> torch.Tensor:
        return self.reader.read(*local_key(self.keys, name))

    def groups(self) -> Iterator[dict[str, torch.Tensor]]:
        """{local name: tensor} for the non-layer tensors, then for each layer in turn."""
        names = self.names()
        yield {n: self.read(n) for n in names if not n.startswith(LAYERS)}
        per_layer = [n.removeprefix(f"{LAYERS}0.") for n in names if n.startswith(LAYERS)]
        for i in range(self.num_layers):
            yield {f"{LAYERS}{i}.{n}": self.read(f"{LAYERS}{i}.{n}") for n in per_layer}


def iter_megatron_tensors(model: ModelConfig, ckpt: Path) -> Iterator[dict[str, torch.Tensor]]:
    """Yield {local name: tensor} for the non-layer tensors, then for each layer in turn."""
    return MegatronTensors(model, ckpt).groups()
