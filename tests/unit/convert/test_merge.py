"""Checkpoint merging (``convert/merge.py``): the linear merge is the weighted average of the
state dicts exactly, slerp's end points are the inputs and its midpoint of orthogonal vectors the
known value, and mismatched architectures, tokenizers or weights are refused naming what differs."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from megatron_hybridir.config import ParallelConfig
from megatron_hybridir.config.presets import preset
from megatron_hybridir.convert.mappings import ConversionError
from megatron_hybridir.convert.merge import SLERP_PARALLEL, merge_checkpoints, slerp


def write_tiny(folder: Path, seed: int, tokenizer_hash: str | None = None, **overrides) -> dict:
    """A converted-checkpoint folder of a tiny model with random weights (norms included, so no
    two tensors are parallel by construction); returns its state dict (TP=1 names)."""
    from megatron.core import dist_checkpointing

    from megatron_hybridir.model.builder import build_model

    model_cfg = preset("tiny", **overrides)
    torch.manual_seed(seed)
    model = build_model(model_cfg, ParallelConfig())
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    folder.mkdir(parents=True)
    (folder / "model.yaml").write_text(yaml.safe_dump(dataclasses.asdict(model_cfg)))
    if tokenizer_hash is not None:
        (folder / "provenance.json").write_text(json.dumps({"tokenizer": {"hash": tokenizer_hash}}))
    (folder / "checkpoint").mkdir()
    dist_checkpointing.save({"model": model.sharded_state_dict()}, str(folder / "checkpoint"))
    return {k: v.detach().clone() for k, v in model.state_dict().items()
            if isinstance(v, torch.Tensor) and not k.endswith("_extra_state")}


def load_merged(folder: Path) -> dict:
    """The merged folder's weights, read the way ``checkpoint.init_from`` reads them."""
    from megatron_hybridir.checkpointing.folders import resolve_checkpoint
    from megatron_hybridir.checkpointing.model_state import load_model_state
    from megatron_hybridir.model.builder import build_model

    model_cfg, ckpt, _ = resolve_checkpoint(folder)
    model = build_model(model_cfg, ParallelConfig())
    load_model_state(ckpt, [model])
    return {k: v for k, v in model.state_dict().items()
            if isinstance(v, torch.Tensor) and not k.endswith("_extra_state")}


@pytest.fixture(scope="module")
def two(tmp_path_factory, megatron_runtime):
    """Two checkpoints written once for the module (merging only reads them; each test writes its
    output under its own tmp_path)."""
    root = tmp_path_factory.mktemp("two")
    a = write_tiny(root / "a", seed=1, tokenizer_hash="same")
    b = write_tiny(root / "b", seed=2, tokenizer_hash="same")
    return root / "a", a, root / "b", b


def test_linear_merge_is_the_weighted_average_exactly(tmp_path, two):
    path_a, a, path_b, b = two
    out = merge_checkpoints([path_a, path_b], tmp_path / "m", weights=[3, 1])   # -> 0.75, 0.25
    merged = load_merged(out)
    assert sorted(merged) == sorted(a)
    for name in a:
        expected = (0.75 * a[name].double() + 0.25 * b[name].double()).to(a[name].dtype)
        assert torch.equal(merged[name], expected), name
    record = json.loads((out / "provenance.json").read_text())["merge"]
    assert record["method"] == "linear"
    assert [(Path(i["path"]), i["weight"]) for i in record["inputs"]] == [
        (path_a.resolve(), 0.75), (path_b.resolve(), 0.25)]


def test_linear_merge_of_three_with_default_weights(tmp_path, two):
    path_a, a, path_b, b = two
    c = write_tiny(tmp_path / "c", seed=3, tokenizer_hash="same")
    merged = load_merged(merge_checkpoints([path_a, path_b, tmp_path / "c"], tmp_path / "m"))
    third = 1 / 3
    for name in a:
        expected = third * a[name].double() + third * b[name].double() + third * c[name].double()
        assert torch.equal(merged[name], expected.float()), name


@pytest.mark.parametrize("weights, which", [([1, 0], 0), ([0, 1], 1)], ids=["t=0", "t=1"])
def test_slerp_end_points_are_the_inputs(tmp_path, two, weights, which):
    path_a, a, path_b, b = two
    merged = load_merged(merge_checkpoints([path_a, path_b], tmp_path / "m", method="slerp",
                                           weights=weights))
    for name in a:
        assert torch.equal(merged[name], (a, b)[which][name]), name


def test_slerp_midpoint_of_orthogonal_vectors():
    out = slerp(torch.tensor([3.0, 0.0]), torch.tensor([0.0, 3.0]), 0.5)
    # omega = pi / 2: both coefficients sin(pi / 4) / sin(pi / 2) = sqrt(2) / 2 (to float64's
    # rounding of acos(0) and sin: one ulp).
    expected = torch.tensor([3 * math.sqrt(0.5)] * 2, dtype=torch.float64)
    torch.testing.assert_close(out, expected, rtol=1e-15, atol=0)
    assert out.norm().item() == pytest.approx(3.0)              # on the circle, not inside it


def test_slerp_of_nearly_parallel_tensors_is_linear():
    a = torch.tensor([1.0, 0.0])
    b = torch.tensor([2.0, 1e-3])            # cos = 0.9999998 > SLERP_PARALLEL
    assert float(a @ b / (a.norm() * b.norm())) > SLERP_PARALLEL
    assert torch.equal(slerp(a, b, 0.25), 0.75 * a.double() + 0.25 * b.double())
    assert torch.equal(slerp(a, torch.zeros(2), 0.5), 0.5 * a.double())   # zero vector: linear


def test_slerp_merge_matches_the_per_tensor_formula(tmp_path, two):
    path_a, a, path_b, b = two
    merged = load_merged(merge_checkpoints([path_a, path_b], tmp_path / "m", method="slerp",
                                           weights=[0.7, 0.3]))
    for name in a:
        assert torch.equal(merged[name], slerp(a[name], b[name], 0.3).float()), name


def test_mismatched_architecture_is_refused_naming_fields_and_paths(tmp_path, megatron_runtime):
    write_tiny(tmp_path / "a", seed=1)
    write_tiny(tmp_path / "b", seed=2, num_layers=4, normalize=False)
    with pytest.raises(ConversionError) as err:
        merge_checkpoints([tmp_path / "a", tmp_path / "b"], tmp_path / "m")
    assert str(err.value) == (f"{tmp_path / 'a'} and {tmp_path / 'b'} are not the same architecture "
                              f"(model.num_layers: 2 vs 4, model.normalize: True vs False); only "
                              f"checkpoints of one architecture can be merged")
    assert not (tmp_path / "m").exists()


def test_mismatched_tokenizers_are_refused_naming_both(tmp_path, megatron_runtime):
    write_tiny(tmp_path / "a", seed=1, tokenizer_hash="abc")
    write_tiny(tmp_path / "b", seed=2, tokenizer_hash="def")
    with pytest.raises(ConversionError) as err:
        merge_checkpoints([tmp_path / "a", tmp_path / "b"], tmp_path / "m")
    assert str(err.value) == (f"{tmp_path / 'a'} (tokenizer hash abc) and {tmp_path / 'b'} "
                              f"(tokenizer hash def) were trained with different tokenizers; "
                              f"refusing to merge")


@pytest.mark.parametrize("kwargs, message", [
    (dict(weights=[1, -1]), r"--weights \[1.0, -1.0\]: \[-1.0\] not a finite non-negative number"),
    (dict(weights=[1, float("nan")]), r"\[nan\] not a finite non-negative number"),
    (dict(weights=[1, float("inf")]), r"\[inf\] not a finite non-negative number"),
    (dict(weights=[0, 0]), r"--weights \[0.0, 0.0\]: all zero; at least one must be positive"),
    (dict(weights=[1, 1, 1]), r"--weights: 3 weights for 2 checkpoints; give one per checkpoint"),
    (dict(method="average"), r"--method 'average': expected one of \['linear', 'slerp'\]"),
], ids=["negative", "nan", "inf", "all-zero", "count", "method"])
def test_bad_weights_and_methods_are_refused(tmp_path, two, kwargs, message):
    path_a, _, path_b, _ = two
    with pytest.raises(ConversionError, match=message):
        merge_checkpoints([path_a, path_b], tmp_path / "m", **kwargs)


def test_slerp_needs_exactly_two(tmp_path, two):
    path_a, _, path_b, _ = two
    with pytest.raises(ConversionError, match="--method slerp merges exactly two checkpoints, got 3"):
        merge_checkpoints([path_a, path_b, path_a], tmp_path / "m", method="slerp")
