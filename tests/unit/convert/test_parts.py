"""The parts an export and an import are composed of (issue 27): the streaming shard writer, the
state-dict adapter, the builder's explicit embedding rows, and the package's import graph."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import torch

from megatron_hybridir.config import ConfigError, ParallelConfig
from megatron_hybridir.config.presets import preset
from megatron_hybridir.convert.adapter import StateDictAdapter, export_family
from megatron_hybridir.convert.shard_writer import ShardWriter


def test_shard_writer_closes_a_shard_at_the_budget_and_never_splits_a_group(tmp_path):
    from safetensors.torch import load_file

    groups = [{"a": torch.zeros(10)}, {"q": torch.ones(30), "k": torch.ones(20)},   # 40 B, 200 B
              {"b": torch.arange(5.0)}, {"c": torch.full((70,), 2.0)}]              # 20 B, 280 B
    writer = ShardWriter(tmp_path, max_shard_bytes=200)
    for group in groups:
        writer.add(group)
    files = writer.close()
    assert files == ["model-00001.safetensors", "model-00002.safetensors",
                     "model.safetensors.index.json"]
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    # a + (q, k) reach 240 >= 200 bytes: the first shard closes after the whole (q, k) group
    assert index == {"metadata": {}, "weight_map": {"a": files[0], "q": files[0], "k": files[0],
                                                    "b": files[1], "c": files[1]}}
    back = {**load_file(tmp_path / files[0]), **load_file(tmp_path / files[1])}
    for group in groups:
        for name, tensor in group.items():
            assert torch.equal(back[name], tensor)


def test_shard_writer_writes_one_shard_as_model_safetensors(tmp_path):
    from safetensors.torch import load_file

    writer = ShardWriter(tmp_path, max_shard_bytes=1 << 20)
    writer.add({"x": torch.ones(3)})
    assert writer.close() == ["model.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]
    assert torch.equal(load_file(tmp_path / "model.safetensors")["x"], torch.ones(3))


@pytest.mark.parametrize("family", ["qwen2", "qwen3", "bert"])
def test_adapter_round_trips_every_tensor_and_writes_in_table_order(family):
    values = {"qwen2": dict(family="qwen2", add_qkv_bias=True),
              "qwen3": dict(family="qwen3", qk_layernorm=True),
              "bert": dict(family="bert", layer_kind="bert", pooler=True,
                           num_query_groups=4)}[family]
    model = preset("tiny", num_layers=3, vocab_size=100, **values)
    adapter = StateDictAdapter(model, export_family(model), megatron_rows=128)
    assert len([e for e in adapter.entries.values() if e.layer is None]) < len(adapter.entries)
    assert {e.layer for e in adapter.entries.values()} - {None} == {0, 1, 2}
    torch.manual_seed(0)
    hf = {}
    shapes = adapter.family.shapes(model)
    for entry in adapter.entries.values():
        hf.update({n: torch.randn(shapes[n]) for n in entry.hf})
    megatron = {name: adapter.to_megatron(name, hf.__getitem__) for name in adapter.entries}
    word = "embedding.word_embeddings.weight"
    assert megatron[word].shape[0] == 128 and not megatron[word][100:].any()   # padded rows
    layer1 = {k: v for k, v in megatron.items() if k.startswith("decoder.layers.1.")}
    written = list(adapter.to_hf(dict(reversed(layer1.items()))))              # any input order
    order = [next(iter(d)) for d in written]
    table = [e.hf[0] for e in adapter.entries.values() if e.layer == 1]
    assert order == table                                                      # the family table's
    back = {k: v for d in adapter.to_hf(megatron) for k, v in d.items()}
    assert back.keys() == hf.keys()
    for name, tensor in hf.items():
        assert torch.equal(back[name], tensor), name


def test_builder_takes_the_embedding_rows_explicitly(megatron_runtime):
    from megatron_hybridir.model.builder import build_model

    model = preset("tiny", vocab_size=67, make_vocab_size_divisible_by=128)
    with torch.device("meta"):
        built = build_model(model, ParallelConfig(), vocab_rows=72)
        default = build_model(model, ParallelConfig())
    assert built.state_dict()["embedding.word_embeddings.weight"].shape[0] == 72
    assert default.state_dict()["embedding.word_embeddings.weight"].shape[0] == 128
    with pytest.raises(ConfigError, match="vocab_rows=66: an embedding table needs at least "
                                          "model.vocab_size=67 rows"):
        build_model(model, ParallelConfig(), vocab_rows=66)


def test_a_registered_family_is_found_by_its_model_type(monkeypatch):
    """The HF model-type map is the registry itself: an entry is all a new family needs."""
    from megatron_hybridir.model import families

    new = families.Family("gemma", "gemma", "GemmaConfig", "GemmaModel")
    monkeypatch.setitem(families.FAMILIES, "gemma", new)
    assert families.family_for_hf({"model_type": "gemma"}) is new
    assert families.family_for_hf({"model_type": "gpt2"}) is None


def _imports(path: Path) -> set[str]:
    """convert modules named by any import in ``path``, inside functions too."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            parts = node.module.split(".")
            if parts[:2] == ["megatron_hybridir", "convert"]:
                out.update([parts[2]] if len(parts) > 2 else [a.name for a in node.names])
        elif isinstance(node, ast.Import):
            out.update(a.name.split(".")[2] for a in node.names
                       if a.name.startswith("megatron_hybridir.convert."))
    return out


def test_convert_has_no_import_cycle_counting_function_level_imports():
    import megatron_hybridir.convert as convert

    folder = Path(convert.__file__).parent
    graph = {p.stem: _imports(p) - {p.stem} for p in folder.glob("*.py")}

    def reaches(start, goal, seen=()):
        return any(n == goal or (n not in seen and reaches(n, goal, (*seen, n)))
                   for n in graph.get(start, ()))
    cycles = sorted(m for m in graph if reaches(m, m))
    assert cycles == [], f"modules on an import cycle: {cycles}"
