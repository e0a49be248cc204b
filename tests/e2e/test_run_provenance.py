"""Provenance and identity of a run: import -> train (init_from) -> export needs no flags and keeps
the family; init_from owns the model section; data tokenizer / vocabulary checked before training;
a relaunch cannot change what its checkpoint was trained with (issues 15 and 16)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from megatron_hybridir.config import ConfigError
from megatron_hybridir.training.run_config import load_run_config
from megatron_hybridir.convert.hf_import import import_hf
from megatron_hybridir.data.preprocess import PreprocessConfig, preprocess
from megatron_hybridir.training.run_identity import check_data
from megatron_hybridir.training.trainer import train
from tests.distributed.harness import run_ranks
from tests.unit.convert.hf_fixtures import load_tool, write_hf_model

PROMPTS = {"query": "Query: ", "positive": "Passage: ", "negative": "Passage: "}


def _records(n: int, words: int = 60) -> list[dict]:
    def text(i, k):
        return " ".join(f"w{(i * 7 + k * 3 + j) % words}" for j in range(4))
    return [{"id": f"i{i}", "query": {l: text(i, k) for k, l in enumerate(("en", "de"))},
             "positive": {l: text(i + 1, k) for k, l in enumerate(("en", "de"))},
             "negatives": [{l: text(i + 2, k) for k, l in enumerate(("en", "de"))}]}
            for i in range(n)]


def _preprocess(folder: Path, tokenizer: Path, records: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    preprocess(PreprocessConfig(sources=[str(folder / "train.jsonl")], languages=["en", "de"],
                                tokenizer=str(tokenizer), output=str(folder / "out"), workers=1,
                                append_eos=False, prompts=dict(PROMPTS),
                                max_length={"query": 12, "positive": 12, "negative": 12}),
               progress=False)
    return folder / "out"


@pytest.fixture(scope="module")
def mistral(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mistral")
    hf = write_hf_model(tmp / "hf", "mistral")
    converted = import_hf(hf, tmp / "converted", dtype="fp32")
    return {"hf": hf, "converted": converted, "data": _preprocess(tmp / "data", hf, _records(24))}


def _overrides(run_dir, setup, *extra):
    return [f"checkpoint.init_from={setup['converted']}", f"data.path={setup['data']}",
            f"checkpoint.dir={run_dir}", "seq_length=12", "data.global_batch_size=4",
            "data.micro_batch_size=2", "training.train_steps=2", "training.log_interval=1",
            "loss.temperature=0.05", *extra]


def _train_rank(launch, overrides: list[str]) -> None:
    train(load_run_config(None, overrides))


def _relaunch_rank(launch, overrides: list[str], errors: str) -> None:
    try:
        train(load_run_config(None, overrides))
    except ConfigError as err:
        Path(errors).write_text(str(err))


def test_run_dir_exports_its_family_and_the_training_prompts(tmp_path, mistral):
    run_dir = tmp_path / "run"
    run_ranks(_train_rank, 1, _overrides(run_dir, mistral))
    record = json.loads((run_dir / "provenance.json").read_text())
    assert record["family"] == "mistral" and record["hf"]["model_type"] == "mistral"
    assert record["data"]["prompts"] == PROMPTS
    # The README's command, with no --tokenizer / --family / prompt flags.
    export = load_tool("export_to_hf")
    assert export(["--checkpoint", str(run_dir), "--output", str(tmp_path / "hf"), "--verify"]) == 0
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["model_type"] == "mistral" and config["architectures"] == ["MistralModel"]
    st = json.loads((tmp_path / "hf" / "config_sentence_transformers.json").read_text())
    assert st["prompts"] == {"query": "Query: ", "document": "Passage: "}


def test_relaunch_refuses_model_changes_and_records_honoured_ones(tmp_path, mistral):
    run_dir = tmp_path / "run"
    run_ranks(_train_rank, 1, _overrides(run_dir, mistral))
    original = (run_dir / "config.yaml").read_bytes()
    errors = tmp_path / "error.txt"
    run_ranks(_relaunch_rank, 1, _overrides(run_dir, mistral, "model.pooling=last",
                                            "training.train_steps=3"), str(errors))
    message = errors.read_text()
    assert "fields that cannot change on a relaunch: model.pooling: 'mean' -> 'last'" in message
    assert "training.train_steps" not in message          # honoured, not refused
    assert (run_dir / "config.yaml").read_bytes() == original
    assert sorted(p.name for p in (run_dir / "launches").iterdir()) == ["0001.yaml"]
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == "2"

    old_lr = yaml.safe_load(original)["optim"]["lr"]
    run_ranks(_train_rank, 1, _overrides(run_dir, mistral, f"optim.lr={old_lr * 10}",
                                         "training.train_steps=4"))
    assert (run_dir / "config.yaml").read_bytes() == original
    launch = yaml.safe_load((run_dir / "launches" / "0002.yaml").read_text())
    assert launch["start_step"] == 2
    assert launch["changes"] == {"optim.lr": {"was": old_lr, "now": old_lr * 10},
                                 "training.train_steps": {"was": 2, "now": 4}}
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    # The new lr and length are used, not the checkpoint's: cosine from 10x lr over 4 steps (the
    # checkpoint's schedule had decayed to 0 at its step 2).
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert rows[2]["lr"] == pytest.approx(0.5 * old_lr * 10 * (1 + math.cos(math.pi * 3 / 4)))


def test_init_from_owns_the_model_section(mistral):
    base = [f"checkpoint.init_from={mistral['converted']}"]
    config = load_run_config(None, base + ["model.hidden_dropout=0.1", "model.pooling=last"])
    assert (config.model.family, config.model.hidden_size, config.model.num_query_groups) == ("mistral", 32, 2)
    assert (config.model.hidden_dropout, config.model.pooling) == (0.1, "last")
    with pytest.raises(ConfigError) as err:
        load_run_config(None, base + ["model.hidden_size=128", "model.num_layers=3"])
    assert ("fields differ from it (checkpoint -> config): model.hidden_size: 32 -> 128; "
            "model.num_layers: 2 -> 3") in str(err.value)


def test_data_from_another_tokenizer_is_refused(tmp_path, mistral):
    other = write_hf_model(tmp_path / "other", "llama")
    tok = json.loads((other / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]                   # same size, two words swapped
    vocab["w1"], vocab["w2"] = vocab["w2"], vocab["w1"]
    (other / "tokenizer.json").write_text(json.dumps(tok))
    data = _preprocess(tmp_path / "data", other, _records(8))
    config = load_run_config(None, [f"checkpoint.init_from={mistral['converted']}",
                                    f"data.path={data}", "seq_length=12"])
    with pytest.raises(ConfigError) as err:
        check_data(config)
    from megatron_hybridir.data.tokenizer import Tokenizer
    theirs, ours = Tokenizer(str(other)).hash, Tokenizer(str(mistral["hf"])).hash
    assert f"tokenized with tokenizer hash {theirs} (vocabulary 67, " in str(err.value)
    assert f"was trained with tokenizer hash {ours} (vocabulary 67, " in str(err.value)


def _big_vocab_data(tmp_path) -> Path:
    """Data whose ids reach 999: a word-level tokenizer of 1,000 entries, texts from its top."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {w: i for i, w in enumerate(["<pad>", "<unk>", "</s>", "Query:", "Passage:"]
                                        + [f"w{i}" for i in range(995)])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    (tmp_path / "tok").mkdir()
    tok.save(str(tmp_path / "tok" / "tokenizer.json"))
    records = [{**r, "query": {l: t.replace("w", "w9") for l, t in r["query"].items()}}
               for r in _records(16, words=90)]
    return _preprocess(tmp_path / "data", tmp_path / "tok", records)


def _vocab_rank(launch, overrides: list[str], errors: str) -> None:
    from megatron_hybridir.training.trainer import TrainingError
    try:
        train(load_run_config(None, overrides))
    except (ConfigError, TrainingError) as err:
        if launch.rank == 0:
            Path(errors).write_text(str(err))


@pytest.mark.parametrize("tp", [1, 2])
def test_ids_beyond_the_model_vocabulary_are_refused(tmp_path, tp):
    data = _big_vocab_data(tmp_path)
    overrides = ["model.preset=tiny", f"data.path={data}", "seq_length=12",
                 "data.global_batch_size=4", "data.micro_batch_size=2", "training.train_steps=2",
                 f"parallel.tensor_model_parallel_size={tp}", f"checkpoint.dir={tmp_path / 'run'}"]
    errors = tmp_path / "error.txt"
    run_ranks(_vocab_rank, tp, overrides, str(errors))
    assert "tokenizer vocabulary 1,000 is larger than model.vocab_size 256" in errors.read_text()
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
    # A manifest that under-reports its vocabulary is caught at the first batch.
    manifest = json.loads((data / "manifest.json").read_text())
    (data / "manifest.json").write_text(json.dumps({**manifest, "vocab_size": 200}))
    errors.unlink()
    run_ranks(_vocab_rank, tp, overrides, str(errors))
    assert "step 1: token id 9" in errors.read_text()
    assert "is outside model.vocab_size 256" in errors.read_text()


def test_relaunch_on_changed_data_stops_naming_both_hashes_unless_allowed(tmp_path, mistral):
    """Issue 24 item 5: data preprocessed again into the same folder (other sources) went unnoticed
    by a relaunch; the run records its data's manifest hash and compares it."""
    from megatron_hybridir.training.run_identity import manifest_hash

    data = _preprocess(tmp_path / "data", mistral["hf"], _records(24))
    first = manifest_hash(data)
    run_dir = tmp_path / "run"
    run_ranks(_train_rank, 1, _overrides(run_dir, mistral, f"data.path={data}"))
    assert json.loads((run_dir / "provenance.json").read_text())["data"]["manifest_sha256"] == first
    _preprocess(tmp_path / "data", mistral["hf"], _records(20, words=40))   # other data, same path
    second = manifest_hash(data)
    assert second != first
    errors = tmp_path / "error.txt"
    longer = _overrides(run_dir, mistral, f"data.path={data}", "training.train_steps=3")
    run_ranks(_relaunch_rank, 1, longer, str(errors))
    assert errors.read_text() == (
        f"{run_dir}: the training data changed since the run trained on it: data.path={data} has "
        f"manifest.json sha256 {second}, but the run recorded {first}. Nothing was written; "
        f"restore the data, start a new checkpoint.dir, or continue on the new data deliberately "
        f"with checkpoint.allow_data_change=true (recorded in launches/)")
    assert sorted(p.name for p in (run_dir / "launches").iterdir()) == ["0001.yaml"]
    run_ranks(_train_rank, 1, [*longer, "checkpoint.allow_data_change=true"])
    launch = yaml.safe_load((run_dir / "launches" / "0002.yaml").read_text())
    assert launch["changes"]["data manifest sha256"] == {"was": first, "now": second}
    assert launch["data"]["manifest_sha256"] == second
    # The deliberate change is now the run's data: a further relaunch needs no flag.
    run_ranks(_train_rank, 1, _overrides(run_dir, mistral, f"data.path={data}",
                                         "training.train_steps=4"))
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == "4"
