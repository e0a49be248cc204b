"""Hard negatives for the demo: a short first pass, its model as the miner, training on the result.

Why it exists: the quickstart should train the way a user with no hard negatives would — and an
untrained model is no miner (its neighbours are noise). The cheapest model that reads all six
synthetic languages is the demo model itself after a short first pass with in-batch negatives
only (a few seconds to encode the pool, versus minutes for all-MiniLM-L6-v2, which sees the
synthetic words as unknown sub-words and matches only shared entity names). ``mined_data`` mines
``train.jsonl`` with it (``megatron_hybridir.mining``: per language, positives and copies never
mined, a rank window) and preprocesses the result; ``random_negative_data``
builds the comparison arm (each negative a random other item's passage in the same language);
``negative_quality`` measures what the negatives are: the shares naming the query's entity or its
relation (hard: they match half the question) and the share containing the asked fact itself
(false negatives: another item's passage may state it among its distractor facts).

What it does not do: train or evaluate (the first pass that trains the miner and then calls
``mined_data`` is ``pipeline.first_pass_and_mine``: this module imports no pipeline step).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Optional

import numpy as np

from megatron_hybridir.demo.data_handle import DemoData
from megatron_hybridir.demo.log import log
from megatron_hybridir.demo.token_budgets import MAX_LENGTH

# No score margin here: after a short first pass the tiny model's cosine scores are compressed (its
# kept negatives score about as high as the positives), so a 0.95 relative margin removed 90% of the
# candidates and left most items without a negative. The rank window skips the two nearest.
MINING = dict(num_negatives=1, range_min=2, range_max=30, sampling="random")


def _preprocess(data: DemoData, source: Path, output: Path) -> DemoData:
    from megatron_hybridir.data.preprocess import PreprocessConfig, preprocess

    if not (output / "manifest.json").exists():
        preprocess(PreprocessConfig(sources=[str(source)], languages=list(data.languages),
                                    tokenizer=str(data.tokenizer),   # as the pipeline's data
                                    output=str(output), append_eos=False, workers=2,
                                    max_length=dict(MAX_LENGTH)),
                   progress=False)
    return dataclasses.replace(data, indexed=output)


def mined_data(data: DemoData, model_dir: Path, folder: Path, *, seed: int = 0,
               teacher: Optional[str] = None) -> DemoData:
    """Mine ``train.jsonl`` with the HF folder ``model_dir`` into ``folder``; the data of the
    mined corpus (indexed in ``folder / "indexed"``). ``teacher``: the miner's ``--teacher`` value
    (the records then carry teacher scores, for ``loss.distillation``)."""
    from megatron_hybridir.mining.miner import MiningConfig, mine

    root = Path(data.root)
    output = Path(folder) / "train.mined.jsonl"
    log(f"mining hard negatives with {model_dir} -> {output}")
    report = mine(MiningConfig(input=str(root / "train.jsonl"), output=str(output),
                               languages=list(data.languages), model=str(model_dir), seed=seed,
                               batch_size=256, progress=False, teacher=teacher, **MINING))
    removed = {l: v["removed"] for l, v in report["languages"].items()}
    log(f"mined; candidates removed per language: {json.dumps(removed)}")
    return _preprocess(data, output, Path(folder) / "indexed")


def random_negative_data(data: DemoData, *, seed: int = 0) -> DemoData:
    """Each item's negative in language l: the positive of a random other item in l."""
    root = Path(data.root)
    output = root / f"train.random{seed}.jsonl"
    if not output.exists():
        records = [json.loads(line) for line in (root / "train.jsonl").read_text().splitlines()]
        rng = np.random.default_rng(seed)
        with output.open("w") as handle:
            for n, record in enumerate(records):
                negative = {}
                for lang in record["positive"]:
                    other = (n + 1 + int(rng.integers(len(records) - 1))) % len(records)
                    negative[lang] = records[other]["positive"][lang]
                handle.write(json.dumps(dict(record, negatives=[negative]), ensure_ascii=False)
                             + "\n")
    return _preprocess(data, output, root / f"indexed_random{seed}")


def negative_quality(path: Path, *, seed: int = 0, languages: Optional[list[str]] = None) -> dict:
    """Per language: share of negatives naming the query's entity, and containing its answer."""
    from megatron_hybridir.demo.languages import build_languages

    langs = build_languages(seed)
    counts: dict = {}
    for line in Path(path).read_text().splitlines():
        record = json.loads(line)
        entity, relation = record["id"].rsplit("-", 1)
        for neg in record.get("negatives") or []:
            for code, text in neg.items():
                if languages and code not in languages:
                    continue
                lang = langs[code]
                name, stop = lang.name(entity), lang.lexicon["stop"]
                answer = next((s for s in _sentences(record["positive"][code], stop)
                               if name in s.split() and lang.lexicon[relation] in s.split()), None)
                entry = counts.setdefault(code, [0, 0, 0, 0])
                entry[0] += 1
                entry[1] += name in text.split()
                entry[2] += lang.lexicon[relation] in text.split()
                entry[3] += answer in _sentences(text, stop)
    return {code: {"negatives": n, "names_entity": e / n, "names_relation": r / n,
                   "contains_answer": a / n} for code, (n, e, r, a) in sorted(counts.items())}


def _sentences(text: str, stop: str) -> list[str]:
    out, current = [], []
    for word in text.split():
        current.append(word)
        if word == stop:
            out.append(" ".join(current))
            current = []
    return out
