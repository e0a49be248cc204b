"""Teacher scores written by the miner: a bi-encoder teacher's scores are the cosines of each
query with its positive and each mined negative (in the order the reader aligns them), a
cross-encoder teacher's are its raw logits, the records round-trip through reader and
preprocessing into batches, and an input's stale scores never survive re-mining."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from megatron_hybridir.data.readers import DataError, read_items
from megatron_hybridir.mining.miner import MiningConfig, mine
from tests.unit.mining.conftest import LANGS, TrigramEncoder
from tests.unit.mining.test_mining import _word_tokenizer


def _config(tmp_path, source, **kw):
    base = dict(input=str(source), output=str(tmp_path / "mined.jsonl"), languages=LANGS,
                model="stand-in", num_negatives=3, range_min=0, range_max=8, progress=False,
                query_block=5, shard_size=7, teacher_block=4)
    base.update(kw)
    return MiningConfig(**base)


def _pairs(record):
    """(lang, query, [positive, negatives in that language...]) as the reader aligns them."""
    if "lang" in record:
        yield record["lang"], record["query"], [record["positive"], *record["negatives"]]
        return
    for lang in record["query"]:
        yield lang, record["query"][lang], [record["positive"][lang]] + [
            neg[lang] for neg in record["negatives"] if lang in neg]


def _scores(record, lang):
    scores = record["teacher_scores"]
    return scores if "lang" in record else scores[lang]


@pytest.mark.slow
def test_bi_encoder_teacher_scores_are_the_cosines_in_reader_order(tmp_path, planted):
    mine(_config(tmp_path, planted, teacher="bi-encoder"), encoder=TrigramEncoder())
    out = tmp_path / "mined.jsonl"
    records = [json.loads(line) for line in out.read_text().splitlines()]
    enc, checked = TrigramEncoder(), 0
    for record in records:
        for lang, query, passages in _pairs(record):
            want = enc._embed(passages) @ enc._embed([query])[0]
            got = _scores(record, lang)
            assert len(got) == len(passages) == 4
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
            checked += 1
    assert checked == 13 + 12
    items = list(read_items(str(out), languages=LANGS))          # the reader accepts them
    assert all(item.teacher_scores is not None for item in items)


def test_mined_scores_reach_the_batch(tmp_path, planted):
    from megatron_hybridir.data.dataset import Collator, TokenizedDataset
    from megatron_hybridir.data.preprocess import PreprocessConfig, preprocess
    from megatron_hybridir.data.sampler import SamplerConfig

    mine(_config(tmp_path, planted, teacher="bi-encoder"), encoder=TrigramEncoder())
    mined = tmp_path / "mined.jsonl"
    records = [json.loads(line) for line in mined.read_text().splitlines()]
    tokenizer = _word_tokenizer(tmp_path, mined.read_text().splitlines())
    manifest = preprocess(PreprocessConfig(sources=[str(mined)], languages=LANGS,
                                           tokenizer=tokenizer, output=str(tmp_path / "ix"),
                                           workers=1), progress=False)
    assert manifest["teacher_scores"] == {"items": len(records)}
    ds = TokenizedDataset(str(tmp_path / "ix"))
    micro = ds.sampler(SamplerConfig(global_batch_size=4, seed=0)).global_batch(0)
    batch = Collator(ds, num_negatives=2)(micro)
    for n, (item, lang) in enumerate(zip(micro.items, micro.passage_lang)):
        record = records[ds.disk_id(int(item))]
        want = torch.tensor(_scores(record, LANGS[int(lang)])[:3], dtype=torch.float32)
        assert torch.equal(batch.teacher_scores[n], want)


def test_stale_input_scores_are_dropped_without_a_teacher(tmp_path, planted):
    records = [json.loads(line) for line in planted.read_text().splitlines()]
    for r in records:
        r["teacher_scores"] = [1.0] if "lang" in r else {l: [1.0] for l in r["query"]}
    planted.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n")
    mine(_config(tmp_path, planted), encoder=TrigramEncoder())
    out = [json.loads(line) for line in (tmp_path / "mined.jsonl").read_text().splitlines()]
    assert all("teacher_scores" not in r and len(r["negatives"]) == 3 for r in out)


def _tiny_cross_encoder(folder):
    """A random 2-layer BERT with one relevance logit and a word-piece vocabulary (no download)."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    text = (folder.parent / "train.jsonl").read_text().lower()
    words = sorted({t for w in text.split() for t in [w.strip('",{}:')] if t.isalpha()})
    vocab = folder.parent / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(vocab))
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=64, num_labels=1, max_position_embeddings=128,
        initializer_range=0.5))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model.eval(), tokenizer


def test_cross_encoder_teacher_writes_its_logits(tmp_path, planted):
    folder = tmp_path / "ce"
    model, tokenizer = _tiny_cross_encoder(folder)
    mine(_config(tmp_path, planted, teacher=f"cross-encoder:{folder}"), encoder=TrigramEncoder())
    records = [json.loads(line) for line in (tmp_path / "mined.jsonl").read_text().splitlines()]
    spread = []
    for record in records:
        for lang, query, passages in _pairs(record):
            with torch.no_grad():
                enc = tokenizer([query] * len(passages), passages, padding=True,
                                truncation=True, return_tensors="pt")
                want = model(**enc).logits[:, 0].numpy()
            np.testing.assert_allclose(_scores(record, lang), want, rtol=1e-4, atol=1e-5)
            spread.append(np.ptp(want))
    assert max(spread) > 1e-3          # the logits differ: a sigmoid or a constant would show


def test_bad_teacher_is_named(tmp_path, planted):
    with pytest.raises(DataError, match="mining.teacher: expected cross-encoder:<folder>"):
        mine(_config(tmp_path, planted, teacher="cross-encoder"), encoder=TrigramEncoder())
    with pytest.raises(DataError, match="is not a model folder"):
        mine(_config(tmp_path, planted, teacher=f"bi-encoder:{tmp_path / 'nope'}"),
             encoder=TrigramEncoder())


def test_parquet_output_carries_the_scores(tmp_path, planted):
    source = tmp_path / "parallel.jsonl"     # Parquet holds one record shape: the parallel ones
    source.write_text("\n".join(line for line in planted.read_text().splitlines()
                                if '"lang"' not in line) + "\n")
    outputs = [str(tmp_path / "mined.jsonl"), str(tmp_path / "mined.parquet")]
    for out in outputs:
        mine(_config(tmp_path, source, output=out, teacher="bi-encoder",
                     work_dir=str(tmp_path / "work")), encoder=TrigramEncoder())
    from_jsonl, from_parquet = (list(read_items(out, languages=LANGS)) for out in outputs)
    assert len(from_parquet) == 12
    for a, b in zip(from_jsonl, from_parquet):
        assert a.negatives == b.negatives and a.teacher_scores.keys() == b.teacher_scores.keys()
        for lang, scores in a.teacher_scores.items():
            assert len(scores) == 4
            np.testing.assert_allclose(b.teacher_scores[lang], scores, rtol=1e-6)
