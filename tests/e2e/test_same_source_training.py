"""``data.same_source_batches`` in a training run: metrics.jsonl counts the batches of each
source, the counts are the sampler's own and survive a resume."""

from __future__ import annotations

import json

import numpy as np

from megatron_hybridir.config import load_config
from megatron_hybridir.training.trainer import train
from tests.distributed.harness import run_ranks


def _train_rank(launch, overrides: list[str]) -> None:
    train(load_config(None, overrides))


def _two_source_data(tmp):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    from megatron_hybridir.data.preprocess import PreprocessConfig, preprocess
    from tests.unit.data.conftest import LANGS, make_records

    records = make_records(40)
    sources = [tmp / "a.jsonl", tmp / "b.jsonl"]
    for path, part in zip(sources, (records[:24], records[24:])):
        path.write_text("\n".join(json.dumps(r) for r in part) + "\n")
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train([str(p) for p in sources], trainers.WordLevelTrainer(
        special_tokens=["<pad>", "<unk>", "</s>"]))
    (tmp / "tok").mkdir()
    tok.save(str(tmp / "tok" / "tokenizer.json"))
    preprocess(PreprocessConfig(sources=[str(p) for p in sources], languages=LANGS,
                                tokenizer=str(tmp / "tok"), output=str(tmp / "out"), workers=1,
                                max_length={"query": 16, "positive": 24, "negative": 24}),
               progress=False)
    return tmp / "out", [str(p) for p in sources]


def test_per_source_batch_counts_in_metrics_survive_a_resume(tmp_path):
    from megatron_hybridir.data.dataset import TokenizedDataset

    data, names = _two_source_data(tmp_path)
    run_dir = tmp_path / "run"
    overrides = ["model.preset=tiny", "seq_length=32", f"data.path={data}",
                 "data.same_source_batches=true", "data.global_batch_size=8",
                 "data.micro_batch_size=4", "training.train_steps=6", f"checkpoint.dir={run_dir}"]
    run_ranks(_train_rank, 1, [*overrides, "training.exit_interval=3"])
    run_ranks(_train_rank, 1, overrides)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    config = load_config(None, overrides)
    sampler = TokenizedDataset(str(data)).sampler(config.data.sampler_config(seed=config.seed))
    drawn = [sampler.global_batch(s).source for s in range(6)]
    for record in records:
        expected = np.bincount(drawn[:record["step"]], minlength=2)
        assert record["source_batches"] == dict(zip(names, expected.tolist())), record
