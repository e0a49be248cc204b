"""The grid runner: cells in seed-major order, a failed or hung cell recorded and not fatal, finished
cells skipped on a rerun, an unfinished cell started again from scratch. A stand-in cell module
replaces training (the real cell is run by tests/e2e/test_study.py)."""

import json

import pytest

from megatron_hybridir.config import ConfigError
from megatron_hybridir.demo.data_handle import DemoData
from megatron_hybridir.study import grid
from megatron_hybridir.study.budget import BudgetRule, EarlyStopping
from megatron_hybridir.study.grid import SizeSpec, StudyConfig, cells, run_grid

STAND_IN_CELL = '''
import json, sys, time
from pathlib import Path
folder = Path(sys.argv[1])
spec = json.loads((folder / "spec.json").read_text())
with open(folder.parent.parent / "calls.txt", "a") as f:
    f.write(spec["cell"] + "\\n")
if spec["alpha"] == 0.5 and spec["seed"] == 2:
    print("boom: planted failure", flush=True)
    sys.exit(3)
if spec["alpha"] == 0.0 and spec["seed"] == 2:
    time.sleep(30)                                   # hangs past the timeout
(folder / "cell.json").write_text(json.dumps({"cell": spec["cell"], "status": "done", "best_step": 7,
                                              "summary": {"mono_mAP": spec["alpha"]}}))
'''


@pytest.fixture
def stand_in(tmp_path, monkeypatch):
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "stand_in_cell.py").write_text(STAND_IN_CELL)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "mods"))
    monkeypatch.setattr(grid, "CELL_MODULE", "stand_in_cell")
    import megatron_hybridir.demo.pipeline as pipeline
    monkeypatch.setattr(pipeline, "prepare_data", lambda root, **_: DemoData(
        root=root, tokenizer=root / "tok", indexed=root / "idx", vocab_size=10,
        languages=("xa", "ya")))
    return tmp_path


def _config(out, **kw):
    return StudyConfig(out=str(out), sizes=[SizeSpec("S", 8), SizeSpec("L", 16)], alphas=[0.0, 0.5],
                       seeds=[1, 2], cell_timeout_s=8, **kw)


def test_cells_are_seed_major():
    names = [c.name for c in cells(_config("x"))]
    assert names[:4] == ["S_a0_s1", "S_a0.5_s1", "L_a0_s1", "L_a0.5_s1"]
    assert names[4:] == ["S_a0_s2", "S_a0.5_s2", "L_a0_s2", "L_a0.5_s2"]


@pytest.mark.slow
def test_failed_and_hung_cells_are_reported_and_the_grid_goes_on(stand_in):
    out = stand_in / "study"
    result = run_grid(_config(out, workers=2))
    assert sorted(result["failed"]) == ["L_a0.5_s2", "L_a0_s2", "S_a0.5_s2", "S_a0_s2"]
    assert result["cells"] == 8
    failed = json.loads((out / "cells" / "S_a0.5_s2" / "failed.json").read_text())
    assert failed["error"] == "exit status 3" and "boom: planted failure" in failed["log_tail"]
    hung = json.loads((out / "cells" / "L_a0_s2" / "failed.json").read_text())
    assert hung["error"] == "timed out after 8 s"
    spec = json.loads((out / "cells" / "L_a0.5_s1" / "spec.json").read_text())
    assert "model.hidden_size=16" in spec["overrides"] and "data.alpha=0.5" in spec["overrides"]
    assert "parallel.tensor_model_parallel_size=1" in spec["overrides"]
    assert len((out / "calls.txt").read_text().split()) == 8


def test_a_rerun_skips_finished_cells_and_retries_the_rest_from_scratch(stand_in):
    out = stand_in / "study"
    config = _config(out, workers=1)
    config.seeds = [1]
    run_grid(config)
    (out / "calls.txt").unlink()
    (out / "cells" / "L_a0_s1" / "cell.json").unlink()            # as if interrupted
    (out / "cells" / "L_a0_s1" / "stale.txt").write_text("half-trained")
    result = run_grid(config)
    assert result["failed"] == []
    assert (out / "calls.txt").read_text().split() == ["L_a0_s1"]
    assert not (out / "cells" / "L_a0_s1" / "stale.txt").exists()


def test_study_config_errors_name_the_field():
    with pytest.raises(ConfigError, match=r"study.alphas: alpha must be in \[0, 1\], got 1.5"):
        StudyConfig(alphas=[1.5]).check()
    with pytest.raises(ConfigError, match=r"study.sizes: duplicate size names \['S', 'S'\]"):
        StudyConfig(sizes=[SizeSpec("S", 8), SizeSpec("S", 16)]).check()
    with pytest.raises(ConfigError, match="budget.patience: expected >= 1, got 0"):
        BudgetRule(patience=0).check()


def test_early_stopping_waits_patience_evaluations_and_keeps_the_best():
    stopper = EarlyStopping(BudgetRule(max_steps=100, interval=10, patience=2, min_delta=0.01))
    decisions = [stopper.update(step, score) for step, score in
                 ((10, 0.1), (20, 0.3), (30, 0.305), (40, 0.35), (50, 0.34), (60, 0.355))]
    assert decisions == [(True, False), (True, False), (False, False), (True, False),
                         (False, False), (False, True)]
    assert (stopper.best_step, stopper.best_score) == (40, 0.35) and not stopper.capped
    capped = EarlyStopping(BudgetRule(max_steps=20, interval=10, patience=2))
    assert capped.update(10, 0.1) == (True, False) and capped.update(20, 0.2) == (True, True)
    assert capped.capped


def _run_study(argv):
    from tests.unit.convert.hf_fixtures import load_tool

    return load_tool("run_study")(argv)


def test_a_size_name_cannot_reach_outside_the_study(stand_in, capsys):
    out = stand_in / "a" / "study"
    victim = stand_in / "a" / "victim_a0.5_s1"          # <out>/cells/../../victim_a0.5_s1
    victim.mkdir(parents=True)
    (victim / "precious.txt").write_text("keep me")
    for _ in range(2):                                  # the first run made it, the second deleted it
        with pytest.raises(SystemExit) as exit_info:
            _run_study(["--out", str(out), "--sizes", "../../victim:24", "--alphas", "0.5",
                        "--seeds", "1"])
        assert exit_info.value.code == 2
        assert "--sizes name: '../../victim' is not a safe name" in capsys.readouterr().err
    assert (victim / "precious.txt").read_text() == "keep me"
    assert not (out / "cells").exists()


def test_child_path_refuses_escapes_through_names_and_links(tmp_path):
    from megatron_hybridir.paths import UnsafePathError, child_path, safe_name

    (tmp_path / "cells").mkdir()
    (tmp_path / "cells" / "link").symlink_to(tmp_path)
    assert child_path(tmp_path / "cells", "S_a0.5_s1") == tmp_path / "cells" / "S_a0.5_s1"
    for bad in ("..", "../x", "link", "link/y"):
        with pytest.raises(UnsafePathError, match="outside"):
            child_path(tmp_path / "cells", bad)
    for bad in ("..", "a/b", "a..b", "", ".", "x y", "/abs"):
        with pytest.raises(UnsafePathError, match=f"size: {bad!r} is not a safe name"):
            safe_name(bad, what="size")
    with pytest.raises(ConfigError, match=r"study.sizes: size name: '\.\./v' is not a safe name"):
        StudyConfig(sizes=[SizeSpec("../v", 8)]).check()


@pytest.mark.parametrize("argv, message", [
    (["--alphas", "0.5", "0.5"], r"study.alphas: duplicates \[0.5, 0.5\]"),
    (["--alphas", "0.5", "0.5000001"], r"study.alphas: duplicates .*'0.5', '0.5'"),
    (["--seeds", "1", "1"], r"study.seeds: duplicates in \[1, 1\]"),
    (["--alphas", "1.5"], r"study.alphas: alpha must be in \[0, 1\], got 1.5"),
    (["--alphas", "nan"], r"study.alphas: alpha must be in \[0, 1\], got nan"),
    (["--sizes", "S:24", "S:64"], r"study.sizes: duplicate size names \['S', 'S'\]"),
    (["--sizes", "S:abc"], r"--sizes: expected NAME:HIDDEN\[:LAYERS\] .* got 'S:abc'"),
    (["--sizes", "S"], r"--sizes: expected NAME:HIDDEN\[:LAYERS\] .* got 'S'"),
])
def test_bad_grid_arguments_stop_before_anything_is_written(stand_in, capsys, argv, message):
    import re

    with pytest.raises(SystemExit) as exit_info:          # stand_in: a broken check runs no training
        _run_study(["--out", str(stand_in / "s"), "--max-steps", "10", "--interval", "10", *argv])
    assert exit_info.value.code == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (stand_in / "s").exists()


def test_report_when_every_cell_failed_names_them_and_their_logs(stand_in, capsys):
    out = stand_in / "study"
    rc = _run_study(["--out", str(out), "--sizes", "S:8", "--alphas", "0.5", "--seeds", "2"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "no finished cells to report on; every cell that ran failed (1)" in err
    assert f"S_a0.5_s2: exit status 3; log: {out / 'cells' / 'S_a0.5_s2' / 'log.txt'}" in err
    assert "Traceback" not in err


def test_cell_spec_round_trips_and_a_bad_spec_names_file_and_field(tmp_path):
    """The grid -> cell hand-off is a typed spec (issue 27): what the cell reads back equals what
    the grid wrote, and a spec from another version or with a mistyped field is refused."""
    from megatron_hybridir.study.grid import CellSpec, cell_spec

    config = _config(tmp_path)
    cell = cells(config)[1]
    data = DemoData(root=tmp_path / "d", tokenizer=tmp_path / "tok", indexed=tmp_path / "idx",
                    vocab_size=10, languages=("xa", "ya"))
    spec = cell_spec(config, cell, data)
    spec.write(tmp_path)
    assert CellSpec.read(tmp_path) == spec
    assert spec.overrides[-2:] == ("data.alpha=0.5", "seed=1")
    raw = json.loads((tmp_path / "spec.json").read_text())
    (tmp_path / "spec.json").write_text(json.dumps(dict(raw, seed="1")))
    with pytest.raises(ConfigError, match=r"spec.json: field 'seed': expected <class 'int'>, got '1'"):
        CellSpec.read(tmp_path)
    (tmp_path / "spec.json").write_text(json.dumps({k: v for k, v in raw.items() if k != "budget"}))
    with pytest.raises(ConfigError, match=r"spec.json: expected the fields .*'budget'.*, got "):
        CellSpec.read(tmp_path)
