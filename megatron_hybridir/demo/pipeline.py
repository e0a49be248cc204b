"""The embedded default end to end: data -> tokenizer -> preprocess -> train (TP=2, two CPU
processes) -> export to HF -> evaluate (mono / cross / multilingual mAP, language bias) -> report.

Why it exists: a new user sees the whole method work on a laptop before renting a cluster, and
the experiments and the study (``study/experiment.py``, ``study/grid.py``) reuse its steps. Each
step is a library call; training runs the real entry point under torchrun in a subprocess, exactly
as on a cluster. Steps whose outputs exist are reused (data, tokenizer, indexed data). The steps
hand on a ``DemoData`` record (``demo/data_handle.py``); the data steps of mining live in
``demo/mining.py``, which imports no pipeline step, and the pipeline's ``first_pass_and_mine`` trains
the miner and calls them.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import yaml

from megatron_hybridir.demo import mining
from megatron_hybridir.demo.data_handle import DemoData
from megatron_hybridir.demo.log import log
from megatron_hybridir.demo.token_budgets import MAX_LENGTH, MAX_SEQ_LENGTH
from megatron_hybridir.recipes import recipe_path
from megatron_hybridir.runtime.child_env import child_env

DEMO_CONFIG = recipe_path("demo_cpu")

FIRST_PASS = ["loss.num_hard_negatives=0"]      # a first pass as if the data had no negatives


def prepare_data(root: Path, *, seed: int = 0, vocab_size: int = 1000,
                 second_source_entities: int = 0) -> DemoData:
    """Demo corpus, SentencePiece tokenizer and indexed training data under ``root`` (reused).
    ``second_source_entities``: also the generator's second source, preprocessed as a second
    source file (``demo/data.py``)."""
    from megatron_hybridir.data.preprocess import PreprocessConfig, preprocess
    from megatron_hybridir.demo.data import make_demo_data
    from megatron_hybridir.demo.tokenizer import train_sentencepiece

    if not (root / "summary.json").exists():
        log("generating the synthetic 6-language corpus"
            + (f" with a second source ({second_source_entities} entities)" if second_source_entities else ""))
        make_demo_data(root, seed=seed, second_source_entities=second_source_entities)
    summary = json.loads((root / "summary.json").read_text())
    # Reused data must be what was asked for: a folder generated with another second source
    # would silently change the experiment.
    have = summary.get("second_source_entities", 0)
    if have != second_source_entities:
        raise ValueError(f"{root / 'summary.json'}: generated with {have} second-source entities, "
                         f"but {second_source_entities} were asked for; use another folder")
    sources = [str(root / "train.jsonl")] + ([str(root / "train.second.jsonl")] if have else [])
    tok = root / "tokenizer"
    if not (tok / "tokenizer.json").exists():
        log(f"training a SentencePiece tokenizer ({vocab_size} pieces)")
        train_sentencepiece(root / "tokenizer_text.txt", tok, vocab_size=vocab_size)
    indexed = root / "indexed"
    if not (indexed / "manifest.json").exists():
        log("tokenizing into Megatron indexed datasets")
        # The tokenizer folder (its tokenizer.json gives the SentencePiece ids, tested), so the
        # manifest's tokenizer hash is the one of the tokenizer export copies.
        preprocess(PreprocessConfig(sources=sources,
                                    languages=list(summary["languages"]), tokenizer=str(tok),
                                    output=str(indexed), append_eos=False, workers=2,
                                    max_length=dict(MAX_LENGTH)),
                   progress=sys.stderr.isatty())
    import sentencepiece as spm
    vocab = spm.SentencePieceProcessor(model_file=str(tok / "spm.model")).get_piece_size()
    return DemoData(root=root, tokenizer=tok, indexed=indexed, vocab_size=vocab,
                    languages=tuple(summary["languages"]))


def train(run_dir: Path, data: DemoData, overrides: list[str], *, nproc: int = 2) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
           "-m", "megatron_hybridir.train", "--config", str(DEMO_CONFIG),
           f"data.path={data.indexed}", f"model.vocab_size={data.vocab_size}",
           f"checkpoint.dir={run_dir}", *overrides]
    # The CPU demo everywhere: on a one-GPU machine both ranks would otherwise claim GPU 0.
    env = child_env(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    log("training: " + " ".join(cmd[3:]))
    subprocess.run(cmd, check=True, env=env)


def save_untrained(run_dir: Path, data: DemoData, overrides: list[str]) -> Path:
    """The same architecture with its initial random weights, as a checkpoint folder (a baseline)."""
    from megatron.core import dist_checkpointing
    from megatron_hybridir.config import ParallelConfig
    from megatron_hybridir.model.builder import build_model
    from megatron_hybridir.runtime.distributed import ensure_runtime
    from megatron_hybridir.runtime.rng import seed_all
    from megatron_hybridir.training.run_config import load_run_config

    config = load_run_config(DEMO_CONFIG, [f"model.vocab_size={data.vocab_size}", *overrides,
                                           "parallel.tensor_model_parallel_size=1"])
    ensure_runtime(config.seed)
    seed_all(config.seed)          # the runtime may exist already, with draws made since its seeding
    model = build_model(config.model, ParallelConfig())
    shutil.rmtree(run_dir, ignore_errors=True)
    (run_dir / "checkpoint").mkdir(parents=True)
    (run_dir / "model.yaml").write_text(yaml.safe_dump(dataclasses.asdict(config.model)))
    dist_checkpointing.save({"model": model.sharded_state_dict()}, str(run_dir / "checkpoint"))
    return run_dir


def export_and_evaluate(run_dir: Path, data: DemoData, *, progress: bool = False) -> dict:
    from megatron_hybridir.convert.hf_export import export_hf
    from megatron_hybridir.evaluation.loading import load_eval_config
    from megatron_hybridir.evaluation.runner import evaluate
    from megatron_hybridir.training.run_summary import run_info

    export = run_dir / "hf"
    log(f"exporting {run_dir} to Hugging Face + sentence-transformers: {export}")
    # The prompts the data were tokenized with (a trained run records them itself; the untrained
    # baseline has no training data, and is evaluated with the same prompts).
    prompts = json.loads((data.indexed / "manifest.json").read_text())["config"]["prompts"]
    export_hf(run_dir, export, tokenizer=data.tokenizer, overwrite=export.exists(),
              max_seq_length=MAX_SEQ_LENGTH, query_prompt=prompts["query"], passage_prompt=prompts["positive"])
    log("evaluating on the demo test set (LAReQA form: every X->X, X->Y and the multilingual pool)")
    config = load_eval_config(None, ["benchmark=lareqa", f"data={data.root / 'test' / 'lareqa'}",
                                     f"encoder.model={export}", f"output={run_dir / 'eval'}",
                                     f"progress={str(progress).lower()}"])
    results = evaluate(config)
    results["run_info"] = run_info(run_dir)
    (run_dir / "eval" / "results.json").write_text(json.dumps(results, indent=2))
    return results


def first_pass_and_mine(run_dir: Path, data: DemoData, overrides: list[str], *, steps: int = 100,
                        seed: int = 0) -> DemoData:
    """Train ``steps`` with in-batch negatives only, export, mine with it; the mined data, with
    ``init_from`` set to the first pass (the main run continues from its weights)."""
    from megatron_hybridir.convert.hf_export import export_hf

    train(run_dir, data, [*overrides, *FIRST_PASS, f"training.train_steps={steps}"])
    export = run_dir / "hf"
    export_hf(run_dir, export, tokenizer=data.tokenizer, overwrite=True,
              max_seq_length=MAX_SEQ_LENGTH)
    mined = mining.mined_data(data, export, run_dir / "mined", seed=seed)
    return dataclasses.replace(mined, init_from=run_dir)


def summary_table(rows: dict[str, dict]) -> str:
    from megatron_hybridir.evaluation.metrics import LAREQA_SUMMARY

    keys = list(LAREQA_SUMMARY)
    lines = ["| model | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, metrics in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{metrics[k]:.3f}" if k != "rank_distance"
                                                 else f"{metrics[k]:.1f}" for k in keys) + " |")
    return "\n".join(lines)


def quickstart(out: Path, *, steps: Optional[int] = None, overrides: Optional[list[str]] = None,
               baseline: bool = True, negatives: str = "mined") -> dict:
    """The README's main command. ``negatives="mined"``: a 100-step first pass with in-batch
    negatives only mines the training negatives (``demo/mining.py``), and the main run starts from
    its weights; ``"data"``: the generator's planted negatives, no first pass."""
    start = time.perf_counter()
    overrides = list(overrides or []) + ([f"training.train_steps={steps}"] if steps else [])
    data = prepare_data(out / "data")
    run_dir = out / "hybrid"
    for stale in (run_dir, out / "first_pass"):
        if (stale / "checkpoints").exists():    # a rerun starts over instead of resuming
            shutil.rmtree(stale)
    if negatives == "mined":
        log("first pass (in-batch negatives only), then mining hard negatives with its model")
        data = first_pass_and_mine(out / "first_pass", data, overrides)
        # demo_cpu.yaml trains from scratch (checkpoint.init: random); this run does not.
        overrides = [*overrides, f"checkpoint.init_from={data.init_from}",
                     "checkpoint.init=pretrained"]
    elif negatives != "data":
        raise ValueError(f"negatives: expected mined or data, got {negatives!r}")
    train(run_dir, data, overrides)
    rows = {"hybrid alpha=0.5 (trained)": export_and_evaluate(run_dir, data)["metrics"]}
    if baseline:
        untrained = save_untrained(out / "untrained", data, overrides)
        rows["untrained (same architecture)"] = export_and_evaluate(untrained, data)["metrics"]
    table = summary_table(rows)
    (out / "results.md").write_text(table + "\n")
    log(f"done in {time.perf_counter() - start:.0f} s; demo test set (unseen entities, 6 languages):")
    print(table)
    print(f"plots: {run_dir / 'eval' / 'map_heatmap.png'}, {run_dir / 'eval' / 'per_language.png'}")
    return rows


def main(argv=None) -> int:
    import argparse
    parser = argparse.ArgumentParser(description="CPU quickstart on the synthetic demo corpus")
    parser.add_argument("--out", default="runs/quickstart")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--negatives", choices=["mined", "data"], default="mined",
                        help="mined: first pass + hard-negative mining (default); data: the "
                             "generator's planted negatives")
    parser.add_argument("overrides", nargs="*", help="training config overrides, key=value")
    args = parser.parse_args(argv)
    quickstart(Path(args.out), steps=args.steps, overrides=args.overrides, negatives=args.negatives)
    return 0


if __name__ == "__main__":
    sys.exit(main())
