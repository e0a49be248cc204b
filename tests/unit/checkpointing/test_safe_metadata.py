"""A crafted ``.metadata`` pickle is refused before torch unpickles it (issue 24 item 10): torch's
checkpoint reader loads that file with plain ``pickle.load``, so a folder whose ``checksums.json``
was rewritten to match would otherwise run code on resume, ``init_from``, export or merge."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
import torch.distributed.checkpoint as dcp

from megatron_hybridir.checkpointing.folders import resolve_checkpoint
from megatron_hybridir.checkpointing.safe_metadata import UnsafeCheckpointError, check_metadata


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def _real_checkpoint(folder):
    state = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.zeros(3, dtype=torch.bfloat16)}
    dcp.save(state, checkpoint_id=str(folder), no_dist=True)
    return state


def test_real_checkpoint_metadata_passes_and_still_loads(tmp_path):
    state = _real_checkpoint(tmp_path / "ckpt")
    check_metadata(tmp_path / "ckpt")
    target = {"w": torch.empty(2, 3), "b": torch.empty(3, dtype=torch.bfloat16)}
    dcp.load(target, checkpoint_id=str(tmp_path / "ckpt"), no_dist=True)
    assert torch.equal(target["w"], state["w"])


def test_crafted_metadata_is_refused_and_its_payload_never_runs(tmp_path):
    folder, marker = tmp_path / "ckpt", tmp_path / "payload_ran"
    _real_checkpoint(folder)
    (folder / ".metadata").write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(UnsafeCheckpointError, match=r"\.metadata: refused to load: the pickle names "
                                                     r"posix\.mkdir.*nothing was executed"):
        check_metadata(folder)
    assert not marker.exists()


def test_a_converted_folder_with_crafted_metadata_is_refused_when_resolved(tmp_path):
    folder, marker = tmp_path / "converted", tmp_path / "payload_ran"
    _real_checkpoint(folder / "checkpoint")
    (folder / "model.yaml").write_text("preset: tiny\n")
    resolve_checkpoint(folder)                                         # genuine: accepted
    (folder / "checkpoint" / ".metadata").write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(UnsafeCheckpointError, match="refused to load"):
        resolve_checkpoint(folder)
    assert not marker.exists()


def test_a_truncated_metadata_is_named(tmp_path):
    _real_checkpoint(tmp_path / "ckpt")
    data = (tmp_path / "ckpt" / ".metadata").read_bytes()
    (tmp_path / "ckpt" / ".metadata").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"\.metadata: unreadable checkpoint metadata"):
        check_metadata(tmp_path / "ckpt")
