"""Preprocess -> indexed datasets -> sampler -> collator, on a real JSONL corpus."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from megatron_hybridir.data.dataset import Collator, TokenizedDataset
from megatron_hybridir.data.preprocess import PreprocessConfig, preprocess
from megatron_hybridir.data.batch_kind import BatchKind
from megatron_hybridir.data.sampler import SamplerConfig
from megatron_hybridir.data.tokenizer import Tokenizer
from tests.unit.data.conftest import LANGS


def _prep(tmp_path, corpus, tokenizer, **kw):
    out = tmp_path / "out"
    manifest = preprocess(PreprocessConfig(sources=[str(p) for p in corpus], languages=LANGS,
                                           tokenizer=tokenizer, output=str(out), workers=2,
                                           chunk_size=5, **kw), progress=False)
    return TokenizedDataset(str(out)), manifest


@pytest.mark.parametrize("backend", ["hf_tokenizer", "sp_tokenizer"])
def test_manifest_and_token_rows(tmp_path, corpus, backend, request):
    tokenizer = request.getfixturevalue(backend)
    ds, manifest = _prep(tmp_path, corpus, tokenizer)
    assert manifest["num_items"] == 30 and manifest["tokenizer_hash"] == Tokenizer(tokenizer).hash
    assert manifest["counts"]["query.en"] == 30 and manifest["counts"]["query.zh"] == 18
    assert manifest["counts"]["negative.de"] == 16
    assert len(ds.parallel_ids) == 24 and len(ds.mono_ids) == 6
    tok = Tokenizer(tokenizer)
    expected = tok.encode(["Query: de question 5"])[0]      # no post-processor: no specials, no EOS
    assert ds.tokens("query", 5, LANGS.index("de")).tolist() == expected
    assert manifest["prompts"]["query"] == "Query: " and manifest["max_length"]["query"] == 64
    assert manifest["tokenizer"]["hash"] == tok.hash and manifest["tokenizer"]["special_tokens"] == []
    with pytest.raises(KeyError, match="item 0 has no query in zh"):
        ds.tokens("query", 0, LANGS.index("zh"))


def test_truncation_and_prompts(tmp_path, corpus, hf_tokenizer):
    ds, _ = _prep(tmp_path, corpus, hf_tokenizer, max_length={"query": 3, "positive": 4,
                                                              "negative": 4})
    tok = Tokenizer(hf_tokenizer)
    row = ds.tokens("query", 1, 0).tolist()
    assert row == tok.encode(["Query: en question 1"])[0][:3] and len(row) == 3


def test_collated_batches_follow_the_sampler(tmp_path, corpus, hf_tokenizer):
    ds, _ = _prep(tmp_path, corpus, hf_tokenizer)
    sampler = ds.sampler(SamplerConfig(global_batch_size=8, seed=3))
    collate = Collator(ds, num_negatives=1)
    tok = Tokenizer(hf_tokenizer)
    vocab = {v: k for k, v in __import__("json").load(open(
        f"{hf_tokenizer}/tokenizer.json"))["model"]["vocab"].items()}
    kinds = set()
    for step in range(12):
        batch = sampler.global_batch(step)
        kinds.add(batch.kind)
        for micro in batch.rank_slice(1, 2).micro_batches(2):
            out = collate(micro)
            assert out.input_ids.shape[0] == 2 * 3 and out.input_ids.shape[1] % 8 == 0
            assert out.kind == batch.kind and (out.num_queries, out.num_negatives) == (2, 1)
            lengths = out.attention_mask.sum(1)
            # The mask covers exactly the real tokens: a prefix as long as the row, pads after it.
            assert (out.attention_mask == (torch.arange(out.input_ids.shape[1])
                                           < lengths[:, None])).all()
            assert (out.input_ids[~out.attention_mask] == tok.pad_id).all()
            assert out.segment_lengths == tuple(-(-int(lengths[a:c].max()) // 8) * 8
                                                for a, c in ((0, 2), (2, 4), (4, 6)))
            for row in range(6):
                words = [vocab[int(t)] for t in out.input_ids[row, : lengths[row]]]
                assert words[-1] != "<pad>" and words[-1][-1].isalnum()
                lang = words[2]  # "Query:"/"Passage:" then "Query" ":" split -> prompt is 2 tokens
                if row < 2:
                    assert lang == LANGS[micro.query_lang[row]]
                else:  # positives and negatives are in the passage language
                    assert lang == LANGS[micro.passage_lang[(row - 2) % 2]]
            if batch.kind == BatchKind.MONOLINGUAL:
                assert (micro.query_lang == micro.passage_lang).all()
    assert kinds == {BatchKind.MONOLINGUAL, BatchKind.CROSS_LINGUAL}
    assert collate.filled_negatives > 0  # items without negatives were exercised
    assert tok.pad_id == 0


def test_fixed_length_padding_for_pipeline_parallelism(tmp_path, corpus, hf_tokenizer):
    ds, _ = _prep(tmp_path, corpus, hf_tokenizer)
    micro = ds.sampler(SamplerConfig(global_batch_size=4)).global_batch(0)
    out = Collator(ds, num_negatives=2, fixed_length=32)(micro)
    assert out.input_ids.shape == (4 * 4, 32) and out.segment_lengths is None
    with pytest.raises(ValueError, match="exceeds fixed length 2"):
        Collator(ds, num_negatives=1, fixed_length=2)(micro)


def test_cli_writes_the_same_dataset(tmp_path, corpus, hf_tokenizer, capsys):
    import runpy
    import sys
    from pathlib import Path

    tool = Path(__file__).resolve().parents[3] / "tools" / "preprocess_data.py"
    argv = [str(tool), "--sources", *map(str, corpus), "--languages", *LANGS, "--tokenizer",
            hf_tokenizer, "--output", str(tmp_path / "cli"), "--workers", "1",
            "--max-length", "query=16", "--prompt", "query=Query: "]
    old, sys.argv = sys.argv, argv
    try:
        with pytest.raises(SystemExit) as exit_:          # the alias exits with main()'s status
            runpy.run_path(str(tool), run_name="__main__")
    finally:
        sys.argv = old
    assert not exit_.value.code
    assert "wrote 30 items" in capsys.readouterr().out
    ds = TokenizedDataset(str(tmp_path / "cli"))
    assert ds.manifest["config"]["max_length"]["query"] == 16
    assert ds.sources.tolist() == [0] * 24 + [1] * 6
    by_size = ds.sampler(SamplerConfig(mode="monolingual", global_batch_size=6))
    assert by_size.mono_share == 1  # 6 of the 30 items are monolingual-only
    weighted = ds.sampler(SamplerConfig(mode="monolingual", global_batch_size=6,
                                        source_weights=(1.0, 1.0)))
    assert weighted.mono_share == 3  # equal weights: half of each monolingual batch


def test_special_tokens_wrap_and_truncate_like_the_encoders_tokenizer(tmp_path, corpus, hf_tokenizer):
    """XLM-R / BERT style: <s> text </s> from the tokenizer's post-processor, truncated inside."""
    import json

    from tokenizers import Tokenizer as HFTokenizer, processors

    path = tmp_path / "tok_special"
    path.mkdir()
    tok = HFTokenizer.from_file(f"{hf_tokenizer}/tokenizer.json")
    tok.add_special_tokens(["<s>"])
    bos, eos = tok.token_to_id("<s>"), tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>",
                                                       special_tokens=[("<s>", bos), ("</s>", eos)])
    tok.save(str(path / "tokenizer.json"))
    ds, manifest = _prep(tmp_path, corpus, str(path),
                         max_length={"query": 4, "positive": 64, "negative": 64})
    full = tok.encode("Query: de question 5").ids           # what sentence-transformers feeds
    assert ds.tokens("positive", 5, LANGS.index("de")).tolist()[0] == bos
    row = ds.tokens("query", 5, LANGS.index("de")).tolist()
    assert row == full[:3] + [eos] and len(full) > 4
    assert manifest["tokenizer"]["special_tokens"] == ["<s>", "</s>"]
    # Old configs that asked for exactly this still load.
    _prep(tmp_path, corpus, str(path), special_tokens=True, append_eos=False)


@pytest.mark.parametrize("kw, message", [
    ({"append_eos": True}, "append_eos=True is refused: inference would not append that EOS"),
    ({"special_tokens": False}, "special_tokens=False is refused"),
    ({"prompts": {"query": "q: ", "positive": "p: ", "negative": "n: "}},
     "prompts: negative 'n: ' != positive 'p: '; both are documents at inference"),
    ({"max_length": {"query": 8, "positive": 8}},
     r"max_length has fields \['positive', 'query'\]; expected exactly \['query', 'positive', "
     r"'negative'\]"),
    ({"max_length": {"query": 0, "positive": 8, "negative": 8}},
     r"max_length query=0: expected an integer above the tokenizer's 0 special tokens"),
])
def test_settings_that_would_break_the_contract_are_refused(tmp_path, corpus, hf_tokenizer, kw,
                                                            message):
    with pytest.raises(ValueError, match=message):
        _prep(tmp_path, corpus, hf_tokenizer, **kw)
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_cli_names_a_malformed_pair(tmp_path, corpus, hf_tokenizer, capsys):
    import runpy
    from pathlib import Path

    tool = Path(__file__).resolve().parents[3] / "tools" / "preprocess_data.py"
    main = runpy.run_path(str(tool))["main"]
    with pytest.raises(SystemExit):
        main(["--sources", str(corpus[0]), "--languages", *LANGS, "--tokenizer", hf_tokenizer,
              "--output", str(tmp_path / "x"), "--max-length", "query64"])
    assert "--max-length 'query64': expected field=value" in capsys.readouterr().err
