"""Fixtures: a small parallel corpus in JSONL and tokenizers trained on it (no downloads)."""

from __future__ import annotations

import json

import pytest

LANGS = ["en", "de", "zh"]


def make_records(n: int = 24) -> list[dict]:
    records = []
    for i in range(n):
        langs = LANGS if i % 4 else LANGS[:2]  # some items lack zh
        records.append({
            "id": f"item{i}",
            "query": {l: f"{l} question {i}" for l in langs},
            "positive": {l: f"{l} answer {i} fact" for l in langs},
            "negatives": [{l: f"{l} wrong {i}" for l in langs}] if i % 3 else [],
        })
    return records


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in make_records()) + "\n")
    mono = tmp_path / "mono_en.jsonl"
    mono.write_text("\n".join(json.dumps({"id": f"m{i}", "lang": "en", "query": f"en only {i}",
                                          "positive": f"en only answer {i}"})
                              for i in range(6)) + "\n")
    return path, mono


@pytest.fixture
def hf_tokenizer(tmp_path, corpus):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    texts = [line for p in corpus for line in p.read_text().splitlines()]
    tok.train_from_iterator(texts + ["Query: Passage:"], trainers.WordLevelTrainer(
        special_tokens=["<pad>", "<unk>", "</s>"]))
    path = tmp_path / "tok"
    path.mkdir()
    tok.save(str(path / "tokenizer.json"))
    return str(path)


@pytest.fixture
def sp_tokenizer(tmp_path, corpus):
    import sentencepiece as spm

    texts = [line for p in corpus for line in p.read_text().splitlines()] * 5
    prefix = tmp_path / "sp"
    spm.SentencePieceTrainer.train(sentence_iterator=iter(texts), model_prefix=str(prefix),
                                   vocab_size=60, pad_id=3, model_type="unigram",
                                   hard_vocab_limit=False)
    return str(prefix) + ".model"
