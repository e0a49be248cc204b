"""The demo corpus: deterministic, disjoint scripts, zero-shot splits, real formats; the tokenizer's
two forms give the same ids."""

import json

import pytest

from megatron_hybridir.demo.data import DemoSizes, make_demo_data
from megatron_hybridir.demo.languages import SCRIPTS, build_languages
from megatron_hybridir.evaluation import loaders

SMALL = DemoSizes(train_entities=60, dev_entities=5, test_entities=10)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    make_demo_data(root, seed=3, sizes=SMALL)
    return root


def test_deterministic(demo, tmp_path):
    make_demo_data(tmp_path, seed=3, sizes=SMALL)
    for name in ("train.jsonl", "test/lareqa/za.json", "test/beir/xb/qrels/test.tsv"):
        assert (tmp_path / name).read_bytes() == (demo / name).read_bytes()


def test_languages_scripts_orders(demo):
    summary = json.loads((demo / "summary.json").read_text())
    assert len(summary["languages"]) >= 6
    assert len({v["script"] for v in summary["languages"].values()}) >= 2
    assert len({v["order"] for v in summary["languages"].values()}) >= 3
    letters = {name: set(c + v) for name, (c, v) in SCRIPTS.items()}
    for a in letters:
        for b in letters:
            assert a == b or not letters[a] & letters[b]
    langs = build_languages(3)
    for record in map(json.loads, (demo / "train.jsonl").read_text().splitlines()):
        for code, text in record["positive"].items():
            used = {c for c in text if c.isalpha()}
            assert used <= letters[langs[code].script], (code, used - letters[langs[code].script])
    # lexicons differ: the same concept has a different word in every language
    words = [lang.lexicon["color"] for lang in langs.values()]
    assert len(set(words)) == len(words)


def test_entities_split_zero_shot(demo):
    train = {json.loads(line)["id"].split("-")[0] for line in (demo / "train.jsonl").read_text().splitlines()}
    test = {json.loads(line)["_id"].split("-")[0]
            for line in (demo / "test/beir/xa/queries.jsonl").read_text().splitlines()}
    assert len(train) == 60 and len(test) == 10 and not train & test


def test_real_formats_load(demo):
    task = loaders.load_lareqa(demo / "test" / "lareqa")
    assert len(task.languages) == 6 and len(task.questions["ya"]) == 40
    assert len(task.candidates["ya"]) == 120        # 3 sentences per passage
    # the answer sentence states the asked fact: it contains the entity name in that script
    qid = next(iter(task.questions["ya"]))
    answer = dict((c[0], c[1]) for c in task.candidates["ya"])[task.answer["ya"][qid]]
    assert build_languages(3)["ya"].name(qid.split("-")[0]) in answer
    beir = loaders.load_beir(demo / "test" / "beir" / "za")
    assert len(beir.query_ids) == 40


def test_sentencepiece_and_tokenizer_json_agree(demo, tmp_path):
    import sentencepiece as spm
    from transformers import AutoTokenizer

    from megatron_hybridir.demo.tokenizer import train_sentencepiece

    out = train_sentencepiece(demo / "tokenizer_text.txt", tmp_path / "tok", vocab_size=300)
    sp = spm.SentencePieceProcessor(model_file=str(out / "spm.model"))
    hf = AutoTokenizer.from_pretrained(str(out))
    lines = ["Query: " + line for line in (demo / "tokenizer_text.txt").read_text().splitlines()]
    assert sp.encode(lines) == hf(lines, add_special_tokens=False)["input_ids"]
