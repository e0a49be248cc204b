"""The mining command's flags come from MiningConfig itself (issue 27: tools stop re-declaring
fields): every field has its flag, the index settings reach the config, and a YAML file and
``field=value`` overrides load through the typed loader with field-naming errors."""

from __future__ import annotations

import dataclasses

import pytest

from megatron_hybridir.cli import mine as mine_cli
from megatron_hybridir.mining.miner import MiningConfig

BASE = ["--input", "in.jsonl", "--output", "out.jsonl", "--languages", "en", "de", "--model", "m"]


def _config(monkeypatch, argv) -> MiningConfig:
    seen = []
    monkeypatch.setattr(mine_cli, "mine", seen.append)
    assert mine_cli.main(argv) == 0
    return seen[0]


def test_every_field_is_a_flag_and_defaults_are_the_dataclass_ones(monkeypatch):
    flags = {a.dest for a in mine_cli.build_parser()._actions}
    fields = {f.name for f in dataclasses.fields(MiningConfig)}
    assert fields - flags == {"range_min", "range_max"}      # both set by --range MIN MAX
    config = _config(monkeypatch, BASE)
    assert config == MiningConfig(input="in.jsonl", output="out.jsonl", languages=["en", "de"],
                                  model="m")


def test_index_settings_normalize_and_range_reach_the_config(monkeypatch):
    config = _config(monkeypatch, [*BASE, "--index", "hnsw", "--ef-search", "64", "--hnsw-m", "8",
                                   "--nprobe", "4", "--nlist", "16", "--no-normalize",
                                   "--range", "5", "50", "--relative-margin", "0.95"])
    assert (config.index, config.ef_search, config.hnsw_m, config.nprobe, config.nlist) == (
        "hnsw", 64, 8, 4, 16)
    assert config.normalize is False and (config.range_min, config.range_max) == (5, 50)
    assert config.relative_margin == 0.95


def test_yaml_then_flags_then_overrides(monkeypatch, tmp_path):
    yaml_file = tmp_path / "mining.yaml"
    yaml_file.write_text("input: in.jsonl\noutput: out.jsonl\nlanguages: [en]\nmodel: m\n"
                         "nprobe: 2\nnum_negatives: 7\n")
    config = _config(monkeypatch, ["--config", str(yaml_file), "--nprobe", "3", "num_negatives=5"])
    assert (config.nprobe, config.num_negatives, config.languages) == (3, 5, ["en"])


@pytest.mark.parametrize("argv,message", [
    (["--input", "x", "--output", "y", "--languages", "en"],
     "missing required setting(s): model (--model, or model=... / in --config)"),
    ([*BASE, "--nprobe", "many"], "nprobe: expected int, got 'many'"),
    ([*BASE, "bogus=1"], "unknown key(s) ['bogus']"),
])
def test_bad_settings_name_the_field(monkeypatch, capsys, argv, message):
    monkeypatch.setattr(mine_cli, "mine", lambda config: pytest.fail("mined"))
    assert mine_cli.main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("field,value,message", [
    ("num_negatives", 0, "mining.num_negatives: must be >= 1, got 0"),
    ("nprobe", 0, "mining.nprobe: must be >= 1, got 0"),
    ("max_empty_fraction", 1.5, "mining.max_empty_fraction: must lie in [0, 1], got 1.5"),
    ("relative_margin", float("nan"), "mining.relative_margin: must lie in (0, 1] (e.g. 0.95), got nan"),
])
def test_ranges_on_the_fields_are_checked(field, value, message):
    """MiningConfig's ranges are annotations on its fields (config/ranges.py), checked at once."""
    from megatron_hybridir.data.readers import DataError
    from megatron_hybridir.mining.miner import validate_mining

    config = MiningConfig(input="in.jsonl", output="out.jsonl", languages=["en"], model="m",
                          **{field: value})
    with pytest.raises(DataError) as err:
        validate_mining(config)
    assert str(err.value) == message
