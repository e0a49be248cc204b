"""Which checkpoint a path names: every path that names none is refused with the path and what is
missing, as one error type that the trainer (``checkpoint.init_from``) and the export tool report."""

import re

import pytest
import yaml

from megatron_hybridir.checkpointing.errors import CheckpointError
from megatron_hybridir.checkpointing.folders import resolve_checkpoint
from megatron_hybridir.config import ConfigError, ModelConfig
from megatron_hybridir.training.run_identity import init_model
from tests.unit.convert.hf_fixtures import load_tool


def _run_dir(root, latest=None, complete=True):
    root.mkdir()
    (root / "config.yaml").write_text(yaml.safe_dump({"model": {"num_layers": 2}}))
    if latest is not None:
        step = root / "checkpoints" / f"step_{latest:08d}"
        step.mkdir(parents=True)
        (root / "checkpoints" / "latest").write_text(f"{latest}\n")
        if complete:
            (step / "metadata.json").write_text("{}")
    return root


def test_run_directory_resolves_to_its_latest_step(tmp_path):
    run = _run_dir(tmp_path / "run", latest=7)
    model, ckpt, info = resolve_checkpoint(run)
    assert model.num_layers == 2 and ckpt == run / "checkpoints" / "step_00000007"
    assert info["folder"] == run and info["provenance"] is None


@pytest.mark.parametrize("case, message", [
    ("empty", "not a run directory (no config.yaml), a checkpoint step, or a converted folder"),
    ("no latest", "no checkpoints/latest"),
    ("incomplete", "not a complete distributed checkpoint (no metadata.json)"),
    ("bad provenance", "provenance.json: not valid JSON"),
])
def test_paths_naming_no_checkpoint_are_refused(tmp_path, case, message):
    path = tmp_path / "x"
    if case == "empty":
        path.mkdir()
    elif case == "no latest":
        _run_dir(path)
    elif case == "incomplete":
        _run_dir(path, latest=3, complete=False)
    else:
        _run_dir(path, latest=3)
        (path / "provenance.json").write_text("{oops")
    with pytest.raises(CheckpointError, match=re.escape(message)) as err:
        resolve_checkpoint(path)
    assert str(tmp_path) in str(err.value)


def test_init_from_names_the_field(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(ConfigError, match=r"^checkpoint.init_from: .*x: not a run directory"):
        init_model(str(tmp_path / "x"), ModelConfig())


def test_export_tool_reports_it_and_exits_2(tmp_path, capsys):
    (tmp_path / "x").mkdir()
    rc = load_tool("export_to_hf")(["--checkpoint", str(tmp_path / "x"), "--output", str(tmp_path / "out")])
    assert rc == 2
    assert f"error: {tmp_path / 'x'}: not a run directory" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
