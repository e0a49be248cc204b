"""One cell of the study in its own process: ``python -m megatron_hybridir.study.cell <cell folder>``.

Why it exists: a crash or a hang of one training run must not take the grid with it
(``study.grid`` runs this with a timeout). Reads ``spec.json`` from the folder; trains a single
process (TP=1) under the budget rule of ``study.budget`` with the trainer's ``on_checkpoint`` hook
(export the checkpoint to Hugging Face, score the dev split, keep the export if it is the best so
far); then scores the best export on the test split per query and writes ``scores.json`` (per
query) and, last, ``cell.json`` (the marker that the cell is done).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import yaml


def run(folder: Path) -> dict:
    from megatron_hybridir.convert.hf_export import export_hf
    from megatron_hybridir.demo.pipeline import DEMO_CONFIG
    from megatron_hybridir.evaluation.encoder import Encoder, EncoderConfig
    from megatron_hybridir.runtime.distributed import shutdown
    from megatron_hybridir.study.budget import EarlyStopping
    from megatron_hybridir.study.grid import CellSpec
    from megatron_hybridir.training.run_summary import run_info
    from megatron_hybridir.study.scoring import dev_score, lareqa_query_scores, query_scores, summarize
    from megatron_hybridir.training.run_config import load_run_config
    from megatron_hybridir.training.trainer import train

    spec = CellSpec.read(folder)
    started = time.perf_counter()
    stopper = EarlyStopping(spec.budget)
    run_dir, best = folder / "run", folder / "best_hf"
    data_root = Path(spec.data_root)
    base = load_run_config(DEMO_CONFIG, list(spec.overrides))
    # Constant learning rate after warmup: min_lr = lr turns the cosine into a constant.
    config = load_run_config(DEMO_CONFIG, [*spec.overrides, *stopper.training_overrides(),
                                           f"optim.min_lr={base.optim.lr}", f"checkpoint.dir={run_dir}"])

    def on_checkpoint(step: int) -> bool:
        candidate = folder / "candidate_hf"
        export_hf(run_dir / "checkpoints" / f"step_{step:08d}", candidate, tokenizer=spec.tokenizer,
                  overwrite=True, max_seq_length=config.seq_length)
        encoder = Encoder(EncoderConfig(model=str(candidate)))
        try:
            score = dev_score(lareqa_query_scores(data_root / "dev" / "lareqa", encoder, list(spec.languages)))
        finally:
            encoder.close()
        improved, stop = stopper.update(step, score)
        if improved:
            shutil.rmtree(best, ignore_errors=True)
            candidate.rename(best)
        print(f"[cell {spec.cell}] step {step}: dev score {score:.4f}"
              f"{' (best)' if improved else ''}{'; stopping' if stop else ''}", flush=True)
        (folder / "early_stopping.json").write_text(json.dumps(stopper.state(), indent=2))
        return stop

    try:
        result = train(config, on_checkpoint=on_checkpoint)
    finally:
        shutdown()
    train_s = time.perf_counter() - started
    encoder = Encoder(EncoderConfig(model=str(best)))
    try:
        scores = query_scores(data_root / "test", encoder, list(spec.languages))
    finally:
        encoder.close()
    info = run_info(run_dir)
    per_step = info["train_flops"] / max(info["train_steps"], 1)
    (folder / "scores.json").write_text(json.dumps(scores))
    record = {"cell": spec.cell, "status": "done", "size": spec.size.name,
              "alpha": spec.alpha, "seed": spec.seed, "parameters": info["parameters"],
              "hidden_size": info["hidden_size"], "num_layers": info["num_layers"],
              "steps_trained": result.last_step, "best_step": stopper.best_step,
              "best_dev_score": stopper.best_score, "capped": stopper.capped,
              "train_flops_to_best": per_step * stopper.best_step,
              "train_flops": info["train_flops"], "summary": summarize(scores),
              "dev_history": stopper.history, "train_s": train_s,
              "wall_s": time.perf_counter() - started,
              "config": yaml.safe_load((run_dir / "config.yaml").read_text())}
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)   # the best export is kept
    (folder / "cell.json").write_text(json.dumps(record, indent=2))
    return record


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m megatron_hybridir.study.cell <cell folder with spec.json>")
    run(Path(sys.argv[1]))
    # cell.json is written: leave now. A normal interpreter exit waited ~30 s on a loaded machine
    # for the threads of gloo / tokenizers, 27 times per grid.
    # os._exit skips multiprocessing's exit handlers, so worker processes started during the run
    # (checkpoint writers) would outlive the cell as orphans: end them first.
    import multiprocessing

    for child in multiprocessing.active_children():
        child.terminate()
        child.join(timeout=10)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
