"""The preprocessing command's flags come from PreprocessConfig (issue 27): each field without its
own pair syntax is a flag, and a YAML file and field=value overrides reach the config typed."""

from __future__ import annotations

import dataclasses

import pytest

from megatron_hybridir.cli import preprocess as cli
from megatron_hybridir.data.preprocess import PreprocessConfig

BASE = ["--sources", "a.jsonl", "--languages", "en", "--tokenizer", "tok", "--output", "out"]


def _config(monkeypatch, argv) -> PreprocessConfig:
    seen = []
    monkeypatch.setattr(cli, "preprocess", lambda config: seen.append(config) or {"num_items": 0})
    assert cli.main(argv) == 0
    return seen[0]


def test_flags_cover_the_dataclass_and_defaults_are_its_own(monkeypatch):
    dests = {a.dest for a in cli.build_parser()._actions}
    assert {f.name for f in dataclasses.fields(PreprocessConfig)} - dests == set(cli._OWN_FLAGS)
    assert _config(monkeypatch, BASE) == PreprocessConfig(sources=["a.jsonl"], languages=["en"],
                                                           tokenizer="tok", output="out")


def test_yaml_flags_pairs_and_overrides(monkeypatch, tmp_path):
    (tmp_path / "p.yaml").write_text("workers: 5\nchunk_size: 100\non_error: skip\n")
    # Overrides before list-valued flags (argparse would give them to --prompt otherwise).
    config = _config(monkeypatch, [*BASE, "chunk_size=64", "--config", str(tmp_path / "p.yaml"),
                                   "--workers", "3", "--max-length", "query=16",
                                   "--prompt", "positive=Doc: "])
    assert (config.workers, config.chunk_size, config.on_error) == (3, 64, "skip")
    assert config.max_length == {"query": 16, "positive": 256, "negative": 256}
    assert config.prompts == {"query": "Query: ", "positive": "Doc: ", "negative": "Doc: "}


def test_a_mistyped_setting_names_the_field(monkeypatch, capsys):
    monkeypatch.setattr(cli, "preprocess", lambda config: pytest.fail("ran"))
    with pytest.raises(SystemExit):
        cli.main([*BASE, "--workers", "two"])
    assert "workers: expected int, got 'two'" in capsys.readouterr().err
