"""Build (CLI) -> tools/preprocess_data.py -> the records load with the training readers and the
token rows of each (item, language) are the tokens of that item's own text."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

from megatron_hybridir.data.dataset import TokenizedDataset
from megatron_hybridir.data.readers import read_items
from megatron_hybridir.data.tokenizer import Tokenizer
from tests.unit.data.sources.conftest import dpr_elements, query_text

TOOLS = Path(__file__).resolve().parents[4] / "tools"
LANGS = ["en", "de", "zh"]


def _tokenizer(tmp_path, files) -> str:
    from tokenizers import Tokenizer as HFTokenizer, models, pre_tokenizers, trainers

    tok = HFTokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    texts = [line for f in files for line in f.read_text().splitlines()]
    tok.train_from_iterator(texts + ["Query: Passage:"], trainers.WordLevelTrainer(
        special_tokens=["<pad>", "<unk>", "</s>"]))
    folder = tmp_path / "tok"
    folder.mkdir()
    tok.save(str(folder / "tokenizer.json"))
    return str(folder)


def test_build_preprocess_and_read_back(mmarco_root, eval_folders, tmp_path, capsys):
    build = runpy.run_path(str(TOOLS / "build_training_data.py"))["main"]
    mm, nq = tmp_path / "mmarco.jsonl", tmp_path / "nq.jsonl"
    build(["mmarco", "--root", str(mmarco_root), "--languages", *LANGS,
           "--triples", str(mmarco_root.parent / "triples.train.ids.small.tsv"),
           "--output", str(mm), "--leak-check", "beir", str(eval_folders["beir"]), "test",
           "--leak-check", "lareqa", str(eval_folders["lareqa"])])
    dpr = tmp_path / "biencoder-nq-train.json"
    dpr.write_text(json.dumps(dpr_elements()))
    build(["dpr", "--source", str(dpr), "--output", str(nq),
           "--leak-check", "nq", str(eval_folders["nq"])])
    printed = capsys.readouterr().out
    assert "leakage vs beir:scifact:test (1 evaluation queries): 1 item(s) matched" in printed
    assert "leakage vs nq:nq (1 evaluation queries): 1 item(s) matched" in printed
    reports = [json.loads((tmp_path / f"{n}.report.json").read_text()) for n in ("mmarco", "nq")]
    assert [r["kept"] for r in reports] == [4, 1]

    items = list(read_items(str(mm), languages=LANGS)) + list(read_items(str(nq), languages=LANGS))
    assert [i.id for i in items] == ["mmarco-1002", "mmarco-1003", "mmarco-1004", "mmarco-1006",
                                     "dpr-0"]

    tokenizer = _tokenizer(tmp_path, [mm, nq])
    runpy.run_path(str(TOOLS / "preprocess_data.py"))["main"](
        ["--sources", str(mm), str(nq), "--languages", *LANGS, "--tokenizer", tokenizer,
         "--output", str(tmp_path / "tok_out"), "--workers", "1"])
    ds = TokenizedDataset(str(tmp_path / "tok_out"))
    assert ds.num_items == 5 and ds.sources.tolist() == [0, 0, 0, 0, 1]
    tok = Tokenizer(tokenizer)
    for n, item in enumerate(items[:4]):       # mMARCO: each language row is its own id's text
        qid = item.id.removeprefix("mmarco-")
        for lang in LANGS:
            if ds.has("query", n, lang):
                assert ds.tokens("query", n, LANGS.index(lang)).tolist() == \
                    tok.encode([f"Query: {query_text(lang, qid)}"])[0]
    assert not ds.has("query", 1, "de")        # 1003 has no German query: absent, not shifted
    assert ds.manifest["counts"]["query.de"] == 3 and ds.manifest["counts"]["query.en"] == 5


def test_cli_names_a_malformed_leak_check(tmp_path, capsys):
    import pytest

    main = runpy.run_path(str(TOOLS / "build_training_data.py"))["main"]
    with pytest.raises(SystemExit):
        main(["dpr", "--source", "x.json", "--output", str(tmp_path / "o.jsonl"),
              "--leak-check", "nq"])
    assert "--leak-check nq: expected KIND PATH [SPLIT]" in capsys.readouterr().err
