"""The study end to end on the demo benchmark, shortened: two real cells (alpha 0.5 and 1) trained
with dev-based early stopping, scored per query on the test split, then the report; a rerun skips
both cells."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from megatron_hybridir.study.budget import BudgetRule
from megatron_hybridir.study.grid import SizeSpec, StudyConfig, run_grid
from megatron_hybridir.study.report import write_report


def _processes_writing_under(folder: Path) -> list[int]:
    """Live processes whose stdout is a file under ``folder`` (Linux /proc)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            target = os.readlink(proc / "fd" / "1")
            state = next(line for line in (proc / "status").read_text().splitlines()
                         if line.startswith("State:"))
        except (OSError, StopIteration):
            continue
        if target.startswith(str(folder)) and state.split()[1] != "Z":   # zombies hold nothing
            found.append(int(proc.name))
    return found


def test_two_cell_study_trains_scores_and_reports(tmp_path):
    config = StudyConfig(out=str(tmp_path), sizes=[SizeSpec("XS", 16)], alphas=[0.5, 1.0], seeds=[1],
                         budget=BudgetRule(max_steps=6, interval=3, patience=1, min_delta=0.0))
    result = run_grid(config)
    assert result["failed"] == [] and result["cells"] == 2
    # A finished cell leaves no worker process behind (it exits with os._exit, which skips
    # multiprocessing's own clean-up; two orphans per cell before the fix).
    if Path("/proc/self/fd").exists():
        # multiprocessing's resource tracker exits by itself once the cell's pipe to it closes,
        # which can take a moment on a loaded machine: an orphan is one still there after 30 s.
        deadline = time.time() + 30
        while _processes_writing_under(tmp_path / "cells") and time.time() < deadline:
            time.sleep(0.5)
        assert _processes_writing_under(tmp_path / "cells") == []
    cell = json.loads((tmp_path / "cells" / "XS_a0.5_s1" / "cell.json").read_text())
    assert [h["step"] for h in cell["dev_history"]] in ([3], [3, 6])
    assert cell["best_step"] in (3, 6) and cell["steps_trained"] == cell["dev_history"][-1]["step"]
    assert cell["config"]["optim"]["min_lr"] == cell["config"]["optim"]["lr"]   # constant LR rule
    assert cell["config"]["data"]["alpha"] == 0.5 and cell["config"]["model"]["hidden_size"] == 16
    scores = json.loads((tmp_path / "cells" / "XS_a0.5_s1" / "scores.json").read_text())
    assert len(scores["mono_mAP"]) == len(scores["beir_ndcg10"]) == 6 * 400   # 400 test items x 6 languages
    for metric, values in scores.items():
        assert cell["summary"][metric] == pytest.approx(np.mean(list(values.values())))
    assert (tmp_path / "cells" / "XS_a0.5_s1" / "best_hf" / "config.json").exists()
    assert not (tmp_path / "cells" / "XS_a0.5_s1" / "run" / "checkpoints").exists()

    # Finished cells are skipped: no cell trains again, and nothing in a cell folder is rewritten.
    before = {p: (p.stat().st_mtime_ns, p.read_bytes())
              for p in sorted((tmp_path / "cells").rglob("*")) if p.is_file()}
    again = run_grid(config)
    assert again["failed"] == [] and again["cells"] == 2
    assert result["wall_s_trained_now"] > 0 and again["wall_s_trained_now"] == 0
    after = {p: (p.stat().st_mtime_ns, p.read_bytes())
             for p in sorted((tmp_path / "cells").rglob("*")) if p.is_file()}
    assert after == before

    payload = write_report(tmp_path, draws=500)
    labels = {c["label"] for c in payload["comparisons"]}
    assert labels == {"XS: alpha=0.5 - alpha=1"}
    assert (tmp_path / "report.md").read_text().startswith("# Size x alpha study")
