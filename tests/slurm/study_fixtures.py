"""Inputs of the tiny Slurm study walk: two tiny Hugging Face checkpoints in the real Mistral and
Qwen3 formats (``transformers`` classes, random weights, ``save_pretrained``) sharing one word-level
tokenizer trained on the fixture texts, the training sources in their public layouts (mMARCO,
MIRACL, DPR NQ; the writers of tests/unit/data/sources) and the evaluation benchmarks in theirs
(tests/unit/evaluation/formats.py), laid out as the plan's ``--data-root`` expects.

Why a module: the test (tests/slurm/test_study_plan.py) and the README walk-through build the same
inputs (``python -m tests.slurm.study_fixtures ROOT`` prints the plan command).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.unit.convert.hf_fixtures import FAMILIES
from tests.unit.data.sources.conftest import (MM_LANGS, TRIPLES, dpr_elements, miracl_rows,
                                              mmarco_tables, write_lines)
from tests.unit.evaluation.formats import write_beir, write_lareqa, write_miracl, write_nq

SIZES = {"tiny-mistral": "mistral", "tiny-qwen3": "qwen3"}
LANGUAGES = ["en", "de", "zh", "sw"]
# An evaluation topic of the MIRACL fixture (formats.write_miracl: topic 0 is "river") also asked
# in the training rows: the data job's leakage check must find and drop it.
LEAKED_TOPIC = "river"

# Tiny, CPU, a few steps: the recipe both sizes train (init_from owns the model section).
RECIPE = """model:
  attention: bidirectional
  pooling: mean
precision:
  dtype: fp32
loss:
  temperature: 0.05
  num_hard_negatives: 1
data:
  mode: hybrid
  alpha: 0.5
  global_batch_size: 4
  micro_batch_size: 2
optim:
  lr: 1.0e-3
  warmup_steps: 1
training:
  train_steps: 3
  log_interval: 1
checkpoint:             # init_from: set by the plan (train_<size>.sbatch) to the imported weights
  save_interval: 3
seq_length: 16
"""


def write_sources(root: Path) -> dict[str, Path]:
    """mMARCO (``data/v2`` + triples), MIRACL train JSONL (sw), DPR NQ train JSON."""
    data = root / "mmarco" / "data"
    for lang, (queries, passages) in mmarco_tables().items():
        name = MM_LANGS[lang]
        write_lines(data / "v2" / "queries" / "train" / f"{name}_queries.train.tsv",
                    (f"{q}\t{t}" for q, t in queries))
        write_lines(data / "v2" / "collections" / f"{name}_collection.tsv",
                    (f"{p}\t{t}" for p, t in passages))
    write_lines(data / "triples.train.ids.small.tsv", ("\t".join(t) for t in TRIPLES))
    rows = miracl_rows() + [{"query_id": "9", "query": LEAKED_TOPIC,
                             "positive_passages": [{"docid": "90#0", "title": "T", "text": "jibu 9"}],
                             "negative_passages": []}]
    miracl = write_lines(root / "miracl-train-sw.jsonl", (json.dumps(r) for r in rows))
    dpr = root / "biencoder-nq-train.json"
    dpr.write_text(json.dumps(dpr_elements()))
    return {"mmarco": data / "v2", "triples": data / "triples.train.ids.small.tsv",
            "miracl": miracl, "dpr": dpr}


def write_eval(root: Path) -> Path:
    """``<root>/eval``: beir/scifact, nq-dpr, miracl, lareqa/{xquad-r,mlqa-r}."""
    data = root / "eval"
    write_beir(data / "beir" / "scifact")
    write_nq(data / "nq-dpr")
    write_miracl(data / "miracl")
    write_lareqa(data / "lareqa" / "xquad-r")
    write_lareqa(data / "lareqa" / "mlqa-r", languages=("en", "de"))
    return data


def write_tokenizer(root: Path, texts: list[str]):
    """A word-level tokenizer over every fixture text (no <unk> in training or evaluation)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(texts + ["Query: Passage:"], trainers.WordLevelTrainer(
        special_tokens=["<pad>", "<unk>", "</s>"]))
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>",
                                   eos_token="</s>")


def write_hf(folder: Path, family: str, tokenizer, seed: int) -> Path:
    """``family``'s transformers model (2 layers, hidden 32), random weights, saved as released."""
    import torch
    import transformers

    config_class, model_class, extra = FAMILIES[family]
    config = getattr(transformers, config_class)(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6, **extra)
    torch.manual_seed(seed)
    getattr(transformers, model_class)(config).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def _texts(root: Path) -> list[str]:
    texts = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix in (".tsv", ".json", ".jsonl", ".csv"):
            texts += path.read_text(encoding="utf-8").replace('"', " ").splitlines()
    return texts


def write_inputs(root: Path) -> dict:
    """Everything under ``root``; the plan's arguments (``--hf``, ``--recipe``, ``--data-source``,
    ``--data-root``) as a dict of lists."""
    import gzip

    sources = write_sources(root)
    eval_root = write_eval(root)
    texts = _texts(root)
    for gz in sorted(eval_root.rglob("*.gz")):
        texts += gzip.open(gz, "rt").read().replace('"', " ").splitlines()
    tokenizer = write_tokenizer(root, texts)
    (root / "recipe.yaml").write_text(RECIPE)
    hf = {size: write_hf(root / "hf" / size, family, tokenizer, seed)
          for seed, (size, family) in enumerate(SIZES.items())}
    e = eval_root
    return {
        "--sizes": list(SIZES),
        "--hf": [f"{s}={p}" for s, p in hf.items()],
        "--recipe": [f"{s}={root / 'recipe.yaml'}" for s in SIZES],
        "--data-source": [
            f"mmarco --root {sources['mmarco']} --languages en de zh --triples {sources['triples']}"
            f" --leak-check beir {e}/beir/scifact test --leak-check lareqa {e}/lareqa/xquad-r",
            f"miracl --source {sources['miracl']} --lang sw --leak-check miracl {e}/miracl",
            f"dpr --source {sources['dpr']} --leak-check nq {e}/nq-dpr"],
        "--languages": LANGUAGES,
        "--data-root": [str(eval_root)],
        "--beir": ["scifact"],
        # One monolingual and one cross-lingual benchmark: each is a process per cell, and the
        # Slurm tier must stay within minutes on two cores.
        "--benchmarks": ["beir", "xquad-r"],
    }


def plan_argv(inputs: dict, out: Path, *, alphas=("0.5", "1"), seeds=("1", "2")) -> list[str]:
    argv = ["--plan", "slurm", "--cpu", "--out", str(out), "--alphas", *alphas, "--seeds", *seeds]
    for flag, values in inputs.items():
        if flag == "--data-source":
            for v in values:
                argv += [flag, v]
        else:
            argv += [flag, *values]
    return argv


if __name__ == "__main__":
    import shlex

    root = Path(sys.argv[1]).resolve()
    argv = plan_argv(write_inputs(root), root / "study")
    print("python tools/run_study.py " + " ".join(shlex.quote(a) for a in argv))
