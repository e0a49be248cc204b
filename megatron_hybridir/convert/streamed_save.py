"""Write a Megatron-Core ``torch_dist`` checkpoint tensor by tensor, without the model in memory.

Why it exists: importing a 30B HF model must not hold 30B parameters in RAM. Megatron-Core's own
saver stages every tensor before writing (its async writer resolves the whole plan up front), so the
importer builds the model on the ``meta`` device — shapes, dtypes and Megatron's exact sharded keys,
no storage — and hands PyTorch DCP a planner whose ``resolve_data`` produces each tensor (or each
layer's slice of a stacked layer tensor) only when the writer asks for it. One file per tensor chunk
keeps the writer from holding earlier chunks (DCP keeps a file's tensors until the file closes).
Everything else is Megatron-Core's: the sharded -> PyTorch conversion, the planner, ``common.pt``
and ``metadata.json``, so ``dist_checkpointing.load`` reads the result like any checkpoint and
re-shards it to any TP / PP.

What it does not do: know about HF (the caller's ``materialize`` does).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch


def save_streamed(sharded_state_dict: dict, folder: Path,
                  materialize: Callable[[str], torch.Tensor]) -> None:
    """Save ``{"model": sharded_state_dict}`` of a meta-device model into ``folder``.

    ``materialize(name)`` returns the full (TP=1) tensor of the local state-dict entry ``name``
    (``decoder.layers.3.mlp.linear_fc1.weight``); it is called about once per entry, in write order.
    """
    import torch.distributed.checkpoint as dcp
    from megatron.core.dist_checkpointing.core import CheckpointingConfig, save_config
    from megatron.core.dist_checkpointing.mapping import ShardedTensor
    from megatron.core.dist_checkpointing.serialization import get_default_save_common_strategy
    from megatron.core.dist_checkpointing.state_dict_utils import save_preprocess
    from megatron.core.dist_checkpointing.strategies.torch import (
        MCoreSavePlanner,
        _replace_state_dict_keys_with_sharded_keys,
        mcore_to_pyt_state_dict,
    )
    from torch.distributed.checkpoint.planner import WriteItemType

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sharded, common = save_preprocess({"model": sharded_state_dict})
    # (checkpoint key, global offset) -> (local name, shard): stacked layer tensors share one key,
    # and factories (SwiGLU's fc1) split one local tensor into several shards of one key.
    names = {}
    for name, value in sharded["model"].items():
        for shard in _tensors(value, ShardedTensor):
            names[(shard.key, tuple(shard.global_offset))] = (name, shard)
    last: dict = {}

    def region(name: str, shard) -> torch.Tensor:
        if last.get("name") != name:          # a factory's shards come one after the other
            last.clear()                        # let the previous tensor go before reading the next
            last.update(name=name, value=materialize(name))
        skip = shard.prepend_axis_num           # leading layer axis: not part of the local tensor
        index = tuple(slice(o, o + n) for o, n in zip(shard.global_offset[skip:], shard.local_shape))
        return last["value"][index]

    get_default_save_common_strategy().save_common(common, folder)
    flat, _, _ = _replace_state_dict_keys_with_sharded_keys(sharded, keep_only_main_replica=True)
    pyt_state_dict = mcore_to_pyt_state_dict(flat, False)

    class Streaming(MCoreSavePlanner):
        def resolve_data(self, write_item):
            if write_item.type == WriteItemType.BYTE_IO:
                return super().resolve_data(write_item)
            chunk = write_item.tensor_data
            value = region(*names[(write_item.index.fqn, tuple(write_item.index.offset))])
            if value.dtype != chunk.properties.dtype:
                value = value.to(chunk.properties.dtype)
            return value.reshape(chunk.chunk.sizes).contiguous()

    writer = dcp.FileSystemWriter(str(folder), single_file_per_rank=False, thread_count=1)
    dcp.save(pyt_state_dict, storage_writer=writer,
             planner=Streaming(dedup_replicated_tensors=False, flatten_state_dict=False),
             no_dist=True)
    save_config(CheckpointingConfig("torch_dist", 1), str(folder))


def _tensors(value, kind):
    """ShardedTensors in a (possibly nested) state-dict value."""
    if isinstance(value, kind):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _tensors(v, kind)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _tensors(v, kind)
