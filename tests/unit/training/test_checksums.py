"""Checkpoint checksums (issue 16 item 7) on plain folders: every kind of damage is named."""

from __future__ import annotations

import json
import os

import pytest

from megatron_hybridir.checkpointing.checksums import (
    MANIFEST,
    CheckpointCorruptError,
    verify_checksums,
    write_checksums,
)
from megatron_hybridir.training.checkpoint import last_good_step, latest_step


def _step(root, step, content=b"weights" * 100):
    folder = root / f"step_{step:08d}"
    (folder / "sub").mkdir(parents=True)
    (folder / "__0_0.distcp").write_bytes(content)
    (folder / ".metadata").write_bytes(b"meta" * 10)
    (folder / "sub" / "common.pt").write_bytes(b"c")
    write_checksums(folder)
    return folder


def _message(folder) -> str:
    with pytest.raises(CheckpointCorruptError) as err:
        verify_checksums(folder)
    return str(err.value)


def test_intact_folder_verifies_and_lists_every_file(tmp_path):
    folder = _step(tmp_path, 1)
    verify_checksums(folder)
    entries = json.loads((folder / MANIFEST).read_text())["files"]
    assert sorted(entries) == [".metadata", "__0_0.distcp", "sub/common.pt"]
    assert entries["__0_0.distcp"]["bytes"] == 700


def test_same_size_change_truncation_loss_and_additions_are_named(tmp_path):
    folder = _step(tmp_path, 1)
    shard = folder / "__0_0.distcp"
    shard.write_bytes(b"weightz" * 100)
    assert _message(folder).startswith(f"{shard}: sha256 ")
    assert _message(folder).endswith("the file was changed after it was saved")
    os.truncate(folder / ".metadata", 3)
    assert _message(folder) == (f"{folder / '.metadata'}: 3 bytes, {MANIFEST} says 40 (truncated "
                                f"or replaced)")
    (folder / ".metadata").unlink()
    assert _message(folder) == f"{folder / '.metadata'}: missing (listed in {MANIFEST})"
    folder = _step(tmp_path, 2)
    (folder / "stray.distcp").write_bytes(b"x")
    assert _message(folder) == (f"{folder / 'stray.distcp'}: not listed in {folder / MANIFEST}; "
                                f"the folder was changed after it was saved")
    (folder / MANIFEST).unlink()
    assert _message(folder) == f"{folder / MANIFEST}: missing; the checkpoint was not completed"
    (folder / MANIFEST).write_text("{")
    assert _message(folder).startswith(f"{folder / MANIFEST}: unreadable")


def test_last_good_step_skips_damaged_ones(tmp_path):
    _step(tmp_path, 2)
    _step(tmp_path, 4)
    six = _step(tmp_path, 6)
    (tmp_path / "step_00000005.tmp").mkdir()          # a save that never finished
    assert last_good_step(tmp_path, before=6) == 4
    (tmp_path / "step_00000004" / "__0_0.distcp").write_bytes(b"x")
    assert last_good_step(tmp_path, before=6) == 2
    assert last_good_step(tmp_path, before=2) is None
    assert six.exists()


def test_latest_pointer_that_is_not_a_number_is_named(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "latest").write_text("garbage")
    with pytest.raises(CheckpointCorruptError, match=r"latest: expected a step number, found 'garbage'"):
        latest_step(tmp_path)


def test_the_offer_names_the_last_good_step_or_says_there_is_none(tmp_path):
    from megatron_hybridir.training.checkpoint import _offer

    _step(tmp_path, 2)
    _step(tmp_path, 4)
    assert _offer(tmp_path, 4) == (f"the last good checkpoint is step 2 ({tmp_path / 'step_00000002'}): "
                                   f"resume from it with `echo 2 > {tmp_path / 'latest'}`")
    assert _offer(tmp_path, 2) == (f"no earlier checkpoint under {tmp_path} verifies; remove "
                                   f"{tmp_path} to start over, or restore the file")
