"""The one write-then-rename helper (megatron_hybridir/atomic.py): a reader sees the old complete
file or folder until the block completes, the new one after; a failure leaves the old one and no
temporary behind."""

import os

import pytest

from megatron_hybridir import atomic


def test_file_is_replaced_only_when_the_block_completes(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text("old")
    with atomic.atomic_file(path) as tmp:
        tmp.write_text("new")
        assert path.read_text() == "old"                 # a reader meanwhile: the old file
        assert tmp.parent == path.parent and tmp.name == f".manifest.json.tmp-{os.getpid()}"
    assert path.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]
    atomic.write_text(path, "newer")
    assert path.read_text() == "newer"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]


def test_failed_file_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic.atomic_file(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.jsonl"]


def test_folder_is_replaced_whole_or_not_at_all(tmp_path):
    final = tmp_path / "indexed"
    final.mkdir()
    (final / "a.bin").write_text("old")
    with pytest.raises(ValueError, match="bad record"):
        with atomic.atomic_folder(final) as stage:
            (stage / "b.bin").write_text("half")
            raise ValueError("bad record")
    assert sorted(p.name for p in final.iterdir()) == ["a.bin"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["indexed"]
    with atomic.atomic_folder(final) as stage:
        (stage / "b.bin").write_text("new")
        assert sorted(p.name for p in final.iterdir()) == ["a.bin"]
    assert sorted(p.name for p in final.iterdir()) == ["b.bin"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["indexed"]     # old copy deleted
    with atomic.atomic_folder(tmp_path / "new" / "deep") as stage:       # parents are made
        (stage / "x").write_text("x")
    assert (tmp_path / "new" / "deep" / "x").read_text() == "x"
