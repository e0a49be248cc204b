"""The size x alpha x seed grid on the embedded benchmark: resumable, one failed cell never fatal.

Why it exists: ``tools/run_study.py`` answers "how does the monolingual vs cross-lingual trade-off of
hybrid batches move as the model grows" with every cell trained under one budget rule
(``study.budget``) and scored per query on both sides (``study.scoring``).

Each cell runs in its own single process (``python -m megatron_hybridir.study.cell``): training
with early stopping on the dev split, then the test evaluation of the best dev checkpoint. A cell is
done when ``<cell>/cell.json`` exists; a rerun skips it. An unfinished cell is started again from
scratch (its folder is wiped), so a half-trained run never mixes with a fresh one. A cell whose
process fails or times out is written to ``<cell>/failed.json`` with its log tail and reported; the
grid goes on. What it does not do: statistics or plots (``study.stats``, ``study.report``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Optional

from megatron_hybridir.demo.data_handle import DemoData
from megatron_hybridir.runtime.child_env import child_env
from megatron_hybridir.study.budget import BudgetRule

CELL_MODULE = "megatron_hybridir.study.cell"     # what one cell runs (tests put a stand-in here)


@dataclass
class SizeSpec:
    name: str
    hidden_size: int
    num_layers: int = 2
    ffn_hidden_size: int = 0        # 0: 2 x hidden
    num_attention_heads: int = 4
    num_query_groups: int = 2

    def overrides(self) -> list[str]:
        return [f"model.hidden_size={self.hidden_size}", f"model.num_layers={self.num_layers}",
                f"model.ffn_hidden_size={self.ffn_hidden_size or 2 * self.hidden_size}",
                f"model.num_attention_heads={self.num_attention_heads}",
                f"model.num_query_groups={self.num_query_groups}"]


# Three demo sizes spanning 12x in parameters (0.034M / 0.14M / 0.42M with the demo's 1000 pieces;
# L is the quickstart's model). Chosen so the 27-cell grid fits in about an hour on 2 shared cores.
DEFAULT_SIZES = (SizeSpec("S", 24), SizeSpec("M", 64), SizeSpec("L", 128))


@dataclass
class StudyConfig:
    out: str = "runs/study"
    sizes: list[SizeSpec] = field(default_factory=lambda: list(DEFAULT_SIZES))
    alphas: list[float] = field(default_factory=lambda: [0.0, 0.5, 1.0])
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3])
    budget: BudgetRule = field(default_factory=BudgetRule)
    overrides: list[str] = field(default_factory=list)   # extra training overrides, every cell
    cell_timeout_s: int = 1800
    workers: int = 1          # cells run at once (each is one single-threaded process)

    def check(self) -> None:
        from megatron_hybridir.config import ConfigError
        from megatron_hybridir.paths import UnsafePathError, safe_name

        self.budget.check()
        if self.workers < 1:
            raise ConfigError(f"study.workers: expected >= 1, got {self.workers}")
        if not self.sizes or not self.alphas or not self.seeds:
            raise ConfigError("study: sizes, alphas and seeds must each be non-empty")
        names = [s.name for s in self.sizes]
        for name in names:          # each becomes part of a folder name under <out>/cells
            try:
                safe_name(name, what="study.sizes: size name")
            except UnsafePathError as err:
                raise ConfigError(str(err)) from None
        if len(set(names)) != len(names):
            raise ConfigError(f"study.sizes: duplicate size names {names}")
        check_alphas_and_seeds(self.alphas, self.seeds, alphas_field="study.alphas",
                               seeds_field="study.seeds")


def check_alphas_and_seeds(alphas, seeds, *, alphas_field: str, seeds_field: str) -> None:
    """Each (alpha, seed) names one cell folder (the CPU grid's and the Slurm plan's alike): alphas
    in [0, 1], and no two alphas or seeds that would share a folder (and so a run directory)."""
    from megatron_hybridir.config import ConfigError

    for a in alphas:
        if not 0.0 <= a <= 1.0:
            raise ConfigError(f"{alphas_field}: alpha must be in [0, 1], got {a}")
    # Cell folders name alpha with :g, so 0.5 and 0.5000001 would share one.
    names = [f"{a:g}" for a in alphas]
    if len(set(names)) != len(names):
        raise ConfigError(f"{alphas_field}: duplicates {list(alphas)} (as cell names: {names})")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{seeds_field}: duplicates in {list(seeds)}")


@dataclass(frozen=True)
class Cell:
    size: SizeSpec
    alpha: float
    seed: int

    @property
    def name(self) -> str:
        return f"{self.size.name}_a{self.alpha:g}_s{self.seed}"


def cells(config: StudyConfig) -> list[Cell]:
    """Seed-major order: an interrupted grid has whole seeds of every (size, alpha), not one size."""
    return [Cell(size, alpha, seed) for seed in config.seeds for size in config.sizes
            for alpha in config.alphas]


@dataclass(frozen=True)
class CellSpec:
    """Everything ``study.cell`` needs (it runs in a fresh process): the grid writes it to
    ``<cell>/spec.json``, the cell reads it back with :meth:`read`, which checks every field."""
    cell: str
    size: SizeSpec
    alpha: float
    seed: int
    budget: BudgetRule
    data_root: str
    tokenizer: str
    languages: tuple[str, ...]
    overrides: tuple[str, ...]

    def write(self, folder: Path) -> Path:
        path = Path(folder) / "spec.json"
        path.write_text(json.dumps(asdict(self), indent=2))
        return path

    @classmethod
    def read(cls, folder: Path) -> "CellSpec":
        """The spec in ``<folder>/spec.json``; a missing, unknown or mistyped field is an error
        naming the file and the field (a spec from another version never runs half-understood)."""
        from megatron_hybridir.config import ConfigError

        path = Path(folder) / "spec.json"
        raw = json.loads(path.read_text())
        names = {f.name for f in fields(cls)}
        if not isinstance(raw, dict) or set(raw) != names:
            got = sorted(raw) if isinstance(raw, dict) else type(raw).__name__
            raise ConfigError(f"{path}: expected the fields {sorted(names)}, got {got}")
        try:
            size, budget = SizeSpec(**raw["size"]), BudgetRule(**raw["budget"])
        except TypeError as err:
            raise ConfigError(f"{path}: size / budget: {err}") from None
        scalars = {"cell": str, "alpha": (int, float), "seed": int, "data_root": str,
                   "tokenizer": str}
        for name, kind in scalars.items():
            if isinstance(raw[name], bool) or not isinstance(raw[name], kind):
                raise ConfigError(f"{path}: field {name!r}: expected {kind}, got {raw[name]!r}")
        for name in ("languages", "overrides"):
            if not isinstance(raw[name], list) or not all(isinstance(v, str) for v in raw[name]):
                raise ConfigError(f"{path}: field {name!r}: expected a list of strings, got "
                                  f"{raw[name]!r}")
        return cls(cell=raw["cell"], size=size, alpha=float(raw["alpha"]), seed=raw["seed"],
                   budget=budget, data_root=raw["data_root"], tokenizer=raw["tokenizer"],
                   languages=tuple(raw["languages"]), overrides=tuple(raw["overrides"]))


def cell_spec(config: StudyConfig, cell: Cell, data: DemoData) -> CellSpec:
    """The spec of one cell of the grid."""
    return CellSpec(
        cell=cell.name, size=cell.size, alpha=cell.alpha, seed=cell.seed, budget=config.budget,
        data_root=str(data.root), tokenizer=str(data.tokenizer), languages=data.languages,
        overrides=(f"data.path={data.indexed}", f"model.vocab_size={data.vocab_size}",
                   "parallel.tensor_model_parallel_size=1", *cell.size.overrides(),
                   f"data.alpha={cell.alpha}", f"seed={cell.seed}", *config.overrides))


def _log(message: str) -> None:
    print(f"[study {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run_cell(config: StudyConfig, cell: Cell, data: DemoData) -> dict:
    """Run one cell in a subprocess unless it is done; returns its record (status done / failed)."""
    from megatron_hybridir.paths import child_path

    folder = child_path(Path(config.out) / "cells", cell.name)   # never rmtree outside <out>/cells
    done = folder / "cell.json"
    if done.exists():
        return {**json.loads(done.read_text()), "skipped": True}
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    cell_spec(config, cell, data).write(folder)
    env = child_env(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    started = time.perf_counter()
    log_path = folder / "log.txt"
    try:
        with open(log_path, "w") as log_file:
            proc = subprocess.run([sys.executable, "-m", CELL_MODULE, str(folder)],
                                  stdout=log_file, stderr=subprocess.STDOUT, env=env,
                                  timeout=config.cell_timeout_s)
        error = None if proc.returncode == 0 else f"exit status {proc.returncode}"
    except subprocess.TimeoutExpired:
        error = f"timed out after {config.cell_timeout_s} s"
    if error is None and done.exists():
        return json.loads(done.read_text())
    error = error or "finished without writing cell.json"
    tail = log_path.read_text(errors="replace").splitlines()[-30:]
    record = {"cell": cell.name, "status": "failed", "error": error, "log_tail": tail,
              "wall_s": time.perf_counter() - started}
    (folder / "failed.json").write_text(json.dumps(record, indent=2))
    return record


def run_grid(config: StudyConfig, *, only: Optional[list[str]] = None) -> dict:
    """Every cell (or those named in ``only``); writes ``<out>/grid.json`` and returns it."""
    from megatron_hybridir.demo.pipeline import prepare_data

    config.check()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "study.json").write_text(json.dumps(asdict(config), indent=2))
    data = prepare_data(out / "data")
    started = time.perf_counter()
    records = {}
    todo = [c for c in cells(config) if only is None or c.name in only]
    # Threads only wait on each cell's subprocess; the work happens in those processes.
    with ThreadPoolExecutor(max_workers=config.workers) as pool:
        futures = {pool.submit(run_cell, config, cell, data): cell for cell in todo}
        for n, future in enumerate(as_completed(futures), 1):
            cell = futures[future]
            record = records[cell.name] = future.result()
            state = "skipped (done)" if record.get("skipped") else record["status"]
            detail = (f"{record['error']}; log: {Path(config.out) / 'cells' / cell.name / 'log.txt'}"
                      if record["status"] == "failed" else
                      f"best step {record['best_step']}, test {_brief(record['summary'])}")
            _log(f"[{n}/{len(todo)}] {cell.name}: {state} — {detail}")
    records = {c.name: records[c.name] for c in todo}
    failed = [name for name, r in records.items() if r["status"] == "failed"]
    grid = {"cells": len(records), "failed": failed, "wall_s": time.perf_counter() - started,
            "wall_s_trained_now": sum(r.get("wall_s", 0.0) for r in records.values()
                                      if not r.get("skipped"))}
    (out / "grid.json").write_text(json.dumps(grid, indent=2))
    if failed:
        _log(f"{len(failed)} cell(s) failed: {failed} (rerun the same command to retry them)")
    return grid


def _brief(summary: dict) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in summary.items() if k != "rank_distance")
