"""Checkpoints carry checksums written at save and verified at load (issue 16 item 7): a shard
changed in place with the same size, a truncated shard or ``.metadata`` stop the relaunch with the
file's name and the last step that verifies; following that advice resumes exactly."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _overrides(run_dir, exit_interval):
    return ["model.preset=tiny", "seq_length=32", "loss.temperature=0.05",
            "data.global_batch_size=8", "data.micro_batch_size=2", "training.train_steps=6",
            f"checkpoint.dir={run_dir}", "checkpoint.save_interval=2", "checkpoint.keep_last=3",
            "training.log_interval=1", f"training.exit_interval={exit_interval}"]


def _train(run_dir, exit_interval=0):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    for key in ("RANK", "WORLD_SIZE"):
        env.pop(key, None)
    return subprocess.run([sys.executable, "-m", "megatron_hybridir.train", *_overrides(run_dir, exit_interval)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def _losses(run_dir):
    return [json.loads(line)["loss"] for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    run = tmp_path_factory.mktemp("straight")
    assert _train(run).returncode == 0
    return _losses(run)


@pytest.fixture(scope="module")
def saved_once(tmp_path_factory):
    run = tmp_path_factory.mktemp("saved") / "run"
    done = _train(run, exit_interval=4)
    assert done.returncode == 0, done.stderr
    ckpt = run / "checkpoints"
    assert sorted(p.name for p in ckpt.iterdir()) == ["latest", "step_00000002", "step_00000004"]
    assert (ckpt / "step_00000004" / "checksums.json").exists()
    return run


@pytest.fixture
def saved(saved_once, tmp_path):
    """A private copy of a run stopped after step 4 (checkpoints at steps 2 and 4)."""
    run = tmp_path / "run"
    shutil.copytree(saved_once, run)
    return run


def _shard(step_dir: Path) -> Path:
    return max((p for p in step_dir.iterdir() if p.suffix == ".distcp"), key=lambda p: p.stat().st_size)


def test_shard_changed_in_place_with_the_same_size_is_named(saved, straight):
    step4 = saved / "checkpoints" / "step_00000004"
    shard = _shard(step4)
    data = bytearray(shard.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(64)                      # same size, different weights
    shard.write_bytes(bytes(data))
    done = _train(saved)
    assert done.returncode == 2
    error = done.stderr[done.stderr.index("error: "):]
    assert error.startswith(f"error: {shard}: sha256 ")
    assert "differs from checksums.json" in error and "the file was changed after it was saved" in error
    latest = saved / "checkpoints" / "latest"
    assert (f"the last good checkpoint is step 2 ({saved / 'checkpoints' / 'step_00000002'}): "
            f"resume from it with `echo 2 > {latest}`") in error
    assert len(_losses(saved)) == 4                           # nothing trained on the bad weights
    latest.write_text("2\n")                                  # follow the advice
    done = _train(saved)
    assert done.returncode == 0, done.stderr
    assert _losses(saved) == straight                         # steps 3-6 retrained, exactly


def test_truncated_metadata_is_named(saved):
    path = saved / "checkpoints" / "step_00000004" / ".metadata"
    size = path.stat().st_size
    os.truncate(path, size // 2)
    done = _train(saved)
    assert done.returncode == 2
    assert (f"error: {path}: {size // 2} bytes, checksums.json says {size} (truncated or replaced)\n"
            f"the last good checkpoint is step 2") in done.stderr, done.stderr[-2000:]
