"""What a killed save leaves in ``checkpoints/`` is cleared or repaired by the next lock holder:
``step_N.tmp`` (never complete) goes; ``step_N.old`` (a complete checkpoint moved aside for a
re-save of step N) comes back when the re-save was killed before its replacement moved in."""

from __future__ import annotations

from megatron_hybridir.training.checkpoint import remove_partial_saves


def _folder(path, text):
    path.mkdir(parents=True)
    (path / "payload").write_text(text)


def test_killed_resave_restores_the_moved_aside_checkpoint(tmp_path):
    root = tmp_path / "checkpoints"
    _folder(root / "step_00000004.old", "complete step 4")
    _folder(root / "step_00000004.tmp", "half of the re-save")
    (root / "latest").write_text("4\n")
    removed = remove_partial_saves(tmp_path)
    assert removed == [root / "step_00000004.tmp"]
    assert (root / "step_00000004" / "payload").read_text() == "complete step 4"
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step_00000004"]


def test_completed_resave_drops_the_old_copy(tmp_path):
    root = tmp_path / "checkpoints"
    _folder(root / "step_00000004.old", "first save")
    _folder(root / "step_00000004", "re-save")
    remove_partial_saves(tmp_path)
    assert (root / "step_00000004" / "payload").read_text() == "re-save"
    assert not (root / "step_00000004.old").exists()
