"""Every demo corpus is tokenized with the same token budgets (demo/token_budgets.MAX_LENGTH): the
pipeline's own data, the mined data and the MiniLM fine-tuning corpus. They once disagreed
(negatives cut at 32 tokens in one, 96 in the others)."""

import json
import sys
from types import SimpleNamespace

from megatron_hybridir.data import preprocess as preprocess_module
from megatron_hybridir.demo import finetune, mining, pipeline
from megatron_hybridir.demo.data_handle import DemoData


def test_all_three_demo_corpora_share_the_token_budgets(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(preprocess_module, "preprocess",
                        lambda config, **kw: seen.setdefault(config.output, config.max_length))
    # Each site finds its inputs present (no generation, training or import happens here).
    root = tmp_path / "pipeline"
    (root / "tokenizer").mkdir(parents=True)
    (root / "tokenizer" / "tokenizer.json").write_text("{}")
    (root / "summary.json").write_text(json.dumps({"languages": ["xa", "xb"]}))
    monkeypatch.setitem(sys.modules, "sentencepiece", SimpleNamespace(
        SentencePieceProcessor=lambda model_file: SimpleNamespace(get_piece_size=lambda: 10)))
    pipeline.prepare_data(root)
    mining._preprocess(DemoData(root=root, tokenizer=root / "tokenizer", indexed=root / "indexed",
                                vocab_size=10, languages=("xa",)),
                       tmp_path / "mined.jsonl", tmp_path / "mined")
    out = tmp_path / "finetune"
    (out / "data").mkdir(parents=True)
    (out / "data" / "summary.json").write_text(json.dumps({"languages": ["xa"]}))
    (out / "minilm").mkdir()
    (out / "minilm" / "provenance.json").write_text("{}")
    finetune.prepare(out)
    assert len(seen) == 3
    expected = {"query": 32, "positive": 96, "negative": 96}
    assert all(budget == expected for budget in seen.values()), seen
    assert pipeline.MAX_SEQ_LENGTH == 96
