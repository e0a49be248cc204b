"""Every loader on fixtures in the real formats, and every error named in the issue."""

import json

import pytest

from megatron_hybridir.evaluation import loaders
from megatron_hybridir.evaluation.tasks import EvalDataError, lareqa_settings
from tests.unit.evaluation import formats


def test_beir_folder(tmp_path):
    task = loaders.load_beir(formats.write_beir(tmp_path / "toy"))
    assert len(task.corpus_ids) == 30 and task.query_ids == [f"q{j}" for j in range(8)]
    assert task.qrels["q3"] == {"d3": 1, "d23": 2}
    assert task.passage(0) == "title 0 the river near the harbor is number 0"


def test_beir_gz_and_unjudged_queries_dropped(tmp_path):
    folder = formats.write_beir(tmp_path / "toy")
    import gzip
    data = (folder / "corpus.jsonl").read_bytes()
    (folder / "corpus.jsonl").unlink()
    with gzip.open(folder / "corpus.jsonl.gz", "wb") as f:
        f.write(data)
    with open(folder / "queries.jsonl", "a") as f:
        f.write(json.dumps({"_id": "unjudged", "text": "tower"}) + "\n")
    task = loaders.load_beir(folder)
    assert "unjudged" not in task.query_ids and len(task.corpus_ids) == 30


def test_beir_errors(tmp_path):
    folder = formats.write_beir(tmp_path / "toy")
    with open(folder / "qrels" / "test.tsv", "a") as f:
        f.write("q1\tnope\t1\n")
    with pytest.raises(EvalDataError, match="document 'nope', which is not in the corpus"):
        loaders.load_beir(folder)
    folder = formats.write_beir(tmp_path / "toy2")
    with open(folder / "qrels" / "test.tsv", "a") as f:
        f.write("ghost\td1\t1\n")
    with pytest.raises(EvalDataError, match="query 'ghost', which is not among"):
        loaders.load_beir(folder)
    folder = formats.write_beir(tmp_path / "toy3")
    with open(folder / "queries.jsonl", "a") as f:
        f.write(json.dumps({"_id": "q9", "text": "  "}) + "\n")
    with pytest.raises(EvalDataError, match="query 'q9' is empty"):
        loaders.load_beir(folder)
    (folder / "queries.jsonl").unlink()
    with pytest.raises(EvalDataError, match="missing queries.jsonl"):
        loaders.load_beir(folder)
    folder = formats.write_beir(tmp_path / "toy4")
    with open(folder / "corpus.jsonl", "a") as f:
        f.write('{"_id": "x"}\n')
    with pytest.raises(EvalDataError, match=r"corpus.jsonl:31: missing field\(s\) \['text'\]"):
        loaders.load_beir(folder)
    with open(folder / "qrels" / "test.tsv", "a") as f:
        f.write("q1 d1\n")
    (folder / "corpus.jsonl").write_text("")
    with pytest.raises(EvalDataError, match=r"test.tsv:\d+: expected 3 columns"):
        loaders.load_beir(folder)


def test_nq_dpr(tmp_path):
    task = loaders.load_nq(formats.write_nq(tmp_path / "nq"))
    assert len(task.corpus_ids) == 20 and task.answers["0"] == ["1900"]
    assert task.passage(3) == "Harbor The harbor was founded in 1903 by people."
    with open(tmp_path / "nq" / "nq-test.qa.csv", "a") as f:
        f.write("broken question\tnot a list\n")
    with pytest.raises(EvalDataError, match=r"nq-test.qa.csv:6: answers 'not a list'"):
        loaders.load_nq(tmp_path / "nq")


def test_miracl(tmp_path):
    task = loaders.load_miracl(formats.write_miracl(tmp_path), "sw")
    assert task.qrels["2"] == {"2#0": 1, "7#0": 0}
    assert task.query_langs == ["sw"] * 4 and len(task.corpus_ids) == 12
    with pytest.raises(EvalDataError, match="missing topics.miracl-v1.0-yo-dev.tsv"):
        loaders.load_miracl(tmp_path, "yo")


def test_lareqa_and_setting_counts(tmp_path):
    task = loaders.load_lareqa(formats.write_lareqa(tmp_path / "x", drop={"xx": ["0-1"]}),
                               parallel=False)      # partially parallel, as MLQA-R
    assert task.languages == ["de", "en", "xx"]
    assert len(task.candidates["en"]) == 9 and len(task.questions["xx"]) == 8
    assert task.answer["de"]["2-1"] == "de:0:2:1"
    assert task.relevant("0-1", task.languages) == {"de:0:0:1", "en:0:0:1"}
    assert len(lareqa_settings(task)) == 9


def test_xquad_r_has_121_settings(tmp_path):
    langs = ["ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh"]
    task = loaders.load_lareqa(formats.write_lareqa(tmp_path / "xq", languages=langs, n_paragraphs=1))
    settings = lareqa_settings(task)
    assert len(settings) == 121
    assert sum(a == b for a, b in settings) == 11 and sum(a != b for a, b in settings) == 110
    mlqa = loaders.load_lareqa(tmp_path / "xq", languages=["ar", "de", "en", "es", "hi", "vi", "zh"])
    assert sum(a != b for a, b in lareqa_settings(mlqa)) == 42


def test_lareqa_errors(tmp_path):
    folder = formats.write_lareqa(tmp_path / "x", languages=("en",))
    with pytest.raises(EvalDataError, match=r"no file for language\(s\) \['fr'\]"):
        loaders.load_lareqa(folder, ["en", "fr"])
    data = json.loads((folder / "en.json").read_text())
    data["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] = 10_000
    (folder / "en.json").write_text(json.dumps(data))
    with pytest.raises(EvalDataError, match="answer_start 10000 lies in no sentence"):
        loaders.load_lareqa(folder)
    del data["data"][0]["paragraphs"][1]["sentences"]
    (folder / "en.json").write_text(json.dumps(data))
    with pytest.raises(EvalDataError, match=r"paragraphs\[0\].*|paragraphs\[1\]: missing 'sentences'"):
        loaders.load_lareqa(folder)


def test_hub_loaders_read_the_hub_schemas(monkeypatch):
    """The hub path with `datasets.load_dataset` answering from in-memory tables of the hub schema."""
    import datasets

    tables = {
        ("BeIR/toy", "corpus"): {"_id": ["d1", "d2"], "title": ["", "t"], "text": ["a b", "c d"]},
        ("BeIR/toy", "queries"): {"_id": ["q1"], "text": ["a"]},
        ("BeIR/toy-qrels", None): {"query-id": ["q1"], "corpus-id": ["d1"], "score": [1]},
        ("miracl/miracl", "sw"): {"query_id": ["7"], "query": ["x"],
                                  "positive_passages": [[{"docid": "1#0", "title": "", "text": ""}]],
                                  "negative_passages": [[{"docid": "2#0", "title": "", "text": ""}]]},
        ("miracl/miracl-corpus", "sw"): {"docid": ["1#0", "2#0"], "title": ["a", "b"], "text": ["x", "y"]},
    }
    monkeypatch.setattr(datasets, "load_dataset", lambda name, config=None, split=None:
                        datasets.Dataset.from_dict(tables[(name, config)]))
    beir = loaders.load_beir_hub("toy")
    assert beir.qrels == {"q1": {"d1": 1}} and beir.passage(1) == "t c d"
    miracl = loaders.load_miracl_hub("sw")
    assert miracl.qrels == {"7": {"1#0": 1, "2#0": 0}} and miracl.corpus_ids == ["1#0", "2#0"]


def test_nq_and_xquad_r_hub_loaders(monkeypatch):
    import datasets

    tables = {
        ("wiki_dpr", "psgs_w100.nq.no_index"): {"id": ["1", "2"], "text": ["a b", "c d"], "title": ["A", "C"]},
        ("nq_open", None): {"question": ["who is a"], "answer": [["a"]]},
        ("xquad_r", "en"): {"id": ["q1", "q2"], "context": ["One sentence. Two here!", "One sentence. Two here!"],
                            "question": ["first?", "second?"],
                            "answers": [{"text": ["One"], "answer_start": [0]},
                                        {"text": ["Two"], "answer_start": [14]}]},
    }
    monkeypatch.setattr(datasets, "load_dataset", lambda name, config=None, split=None:
                        datasets.Dataset.from_dict(tables[(name, config)]))
    nq = loaders.load_nq_hub()
    assert nq.answers == {"0": ["a"]} and nq.passage(1) == "C c d"
    xq = loaders.load_xquad_r_hub(["en"])
    assert [c[1] for c in xq.candidates["en"]] == ["One sentence.", "Two here!"]
    assert xq.answer["en"] == {"q1": "en:0:0", "q2": "en:0:1"}
    assert loaders.split_sentences("这是。那是！") == [[0, 3], [3, 6]]
