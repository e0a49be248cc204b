"""The jobs of the Slurm study that come before training, and ``submit.sh`` that chains every job.

Why it exists: a study at 7B-30B is a pipeline, not a training array: each size's Hugging Face
checkpoint is imported (``tools/convert_hf_to_megatron.py``), the training records are built from
the public sources (``tools/build_training_data.py``) and tokenized with that size's tokenizer
(``tools/preprocess_data.py``), and only then can the size's array train from the imported weights
on its own token ids. ``study.slurm`` writes the training, evaluation and report jobs; this module
writes the rest and the submission script, whose graph is

    data -> prep_<size> ---\\
    import_<size> ----------> train_<size> (array) -> eval_cell (one per task) -> report

with ``sbatch --parsable`` ids and ``--dependency=afterok:``. (Import and data building are
independent: the tokenizer is read from the Hugging Face folder, so neither waits for the other.)

Each ``--data-source`` of the plan is one invocation of ``tools/build_training_data.py``
(``'<kind> <its arguments>'``, e.g. ``'dpr --source biencoder-nq-train.json --leak-check nq nq'``),
passed verbatim; the plan adds only ``--output <study>/data/records/<n>_<kind>.jsonl``, and
``prep_<size>.sbatch`` tokenizes every ``*.jsonl`` there (failing when there is none).
What it does not do: estimate costs (``study.slurm``) or run anything.
"""

from __future__ import annotations

import re
import shlex

HEADER = """#!/usr/bin/env bash
#SBATCH --job-name={name}
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task={cpus}
{mem}#SBATCH --time={time}
#SBATCH --output={out}/logs/%x-%j.out
"""
PREAMBLE = """set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-.}"
PY=${PYTHON:-python3}
"""


def _header(out: str, name: str, cpus: int, mem: str, time: str, cpu: bool) -> str:
    """``cpu``: the plan's CPU walk (``--cpu``): one CPU and no memory request, so the job fits a
    laptop-sized node (a 128G request on a smaller node is never scheduled)."""
    if cpu:
        return HEADER.format(name=name, cpus=1, mem="", time=time, out=out)
    return HEADER.format(name=name, cpus=cpus, mem=f"#SBATCH --mem={mem}\n", time=time, out=out)


def _q(value) -> str:
    return shlex.quote(str(value))


BUILDER_KINDS = ("mmarco", "miracl", "dpr", "beir")    # tools/build_training_data.py sub-commands


def check_data_source(text: str) -> list[str]:
    """One ``--data-source`` as arguments; the builder's kind first, ``--output`` left to the plan."""
    from megatron_hybridir.config import ConfigError

    args = shlex.split(text)
    if not args or args[0] not in BUILDER_KINDS:
        raise ConfigError(f"--data-source {text!r}: expected '<kind> <arguments>' with kind one of "
                          f"{list(BUILDER_KINDS)} (tools/build_training_data.py)")
    if any(a == "--output" or a.startswith("--output=") for a in args):
        raise ConfigError(f"--data-source {text!r}: leave out --output; the plan writes each source "
                          f"to <study>/data/records/<n>_<kind>.jsonl")
    return args


def data_script(out: str, sources: list[str], *, cpu: bool = False) -> str:
    records = out + "/data/records"
    lines = [f"mkdir -p {_q(records)}"]
    for n, text in enumerate(sources):
        args = check_data_source(text)
        lines.append(f"\"$PY\" tools/build_training_data.py {' '.join(_q(a) for a in args)} "
                     f"--output {_q(f'{records}/{n}_{args[0]}.jsonl')}")
    return (_header(out, "study-data", 32, "128G", "24:00:00", cpu)
            + "# Build the training records (query, positive, hard negatives, per language) from the\n"
            + "# public sources: one builder call per --data-source of the plan, verbatim.\n" + PREAMBLE
            + "\n".join(lines) + "\n")


def prep_script(out: str, size: str, hf: str, languages: list[str], *, cpu: bool = False) -> str:
    records = _q(out + "/data/records")
    return (_header(out, f"study-prep-{size}", 32, "128G", "12:00:00", cpu)
            + f"# Tokenize the records with the {size} model's own tokenizer ({hf}) into\n"
            + f"# {out}/data/{size}, the data.path of the {size} training array.\n" + PREAMBLE
            + "shopt -s nullglob\n"
            + f"sources=({records}/*.jsonl)\n"
            + 'if [ "${#sources[@]}" -eq 0 ]; then\n'
            + f"    echo \"prep: no *.jsonl records in {out}/data/records\" >&2\n"
            + "    exit 1\nfi\n"
            + f"\"$PY\" tools/preprocess_data.py --sources \"${{sources[@]}}\" --languages "
            + f"{' '.join(_q(lang) for lang in languages)} --tokenizer {_q(hf)} "
            + f"--output {_q(f'{out}/data/{size}')} --workers \"${{SLURM_CPUS_PER_TASK:-16}}\"\n")


def import_script(out: str, size: str, hf: str, run, *, cpu: bool = False) -> str:
    """``run``: the size's loaded recipe; the import is laid out for its parallelism and head."""
    p, m = run.parallel, run.model
    args = (f"--hf {_q(hf)} --output {_q(f'{out}/checkpoints/{size}')} "
            f"--tensor-parallel {p.tensor_model_parallel_size} "
            f"--pipeline-parallel {p.pipeline_model_parallel_size} --dtype {run.precision.dtype} "
            f"--pooling {m.pooling} --attention {m.attention} --overwrite")
    return (_header(out, f"study-import-{size}", 32, "0", "6:00:00", cpu)
            + f"# Import {hf} as the Megatron checkpoint every {size} cell starts from\n"
            + "# (checkpoint.init_from of the training array).\n" + PREAMBLE
            + f"\"$PY\" tools/convert_hf_to_megatron.py {args}\n")


SUBMIT_FUNCTION = """# submit NAME AFTEROK SCRIPT [ARGS...]: sbatch it after the job ids AFTEROK (':'-joined, or -);
# prints the job id and records "NAME<TAB>ID<TAB>AFTEROK" in jobs.tsv (scancel, sacct, checks).
submit() {{
    local name=$1 after=$2 id
    shift 2
    local dep=()
    [[ $after == - ]] || dep=("--dependency=afterok:$after")
    id=$(sbatch --parsable "${{dep[@]}}" "$@")
    id=${{id%%;*}}
    printf '%s\\t%s\\t%s\\n' "$name" "$id" "$after" >> {jobs}
    echo "$id"
}}"""


def submit_script(out: str, sizes: list[str], runs: dict[str, list[str]]) -> str:
    """``runs``: per size, the run directory of each array task (index = task id)."""
    o = _q(out)
    lines = ["#!/usr/bin/env bash",
             "# Submit the whole study: data and imports, preprocessing per size, the training arrays,",
             "# one evaluation per training task, then the report (every edge afterok).",
             "# Run from the repository root.",
             "set -euo pipefail", f"mkdir -p {o}/logs   # every job's output (#SBATCH --output)",
             f": > {o}/jobs.tsv", SUBMIT_FUNCTION.format(jobs=f"{o}/jobs.tsv"), "eval_jobs=()",
             f"data=$(submit data - {o}/data.sbatch)"]
    # Every size's import, preprocessing and training array first, the evaluations after: a FIFO
    # scheduler then never queues one size's preprocessing behind another size's evaluations.
    for size in sizes:
        v = re.sub(r"\W", "_", size)       # a bash name: "tiny-qwen3" -> tiny_qwen3
        lines += [f"import_{v}=$(submit import_{size} - {o}/import_{size}.sbatch)",
                  f"prep_{v}=$(submit prep_{size} \"$data\" {o}/prep_{size}.sbatch)",
                  f"train_{v}=$(submit train_{size} \"$import_{v}:$prep_{v}\" {o}/train_{size}.sbatch)"]
    for size in sizes:
        v = re.sub(r"\W", "_", size)
        lines += ["runs=(" + " ".join(_q(r) for r in runs[size]) + ")",
                  f"for i in $(seq 0 {len(runs[size]) - 1}); do",
                  f"    eval_jobs+=(\"$(submit \"eval_$(basename \"${{runs[$i]}}\")\" \"${{train_{v}}}_$i\" "
                  f"{o}/eval_cell.sbatch \"${{runs[$i]}}\")\")",
                  "done"]
    lines += ['deps=$(IFS=:; echo "${eval_jobs[*]}")',
              f"report=$(submit report \"$deps\" {o}/report.sbatch)",
              f'echo "submitted ${{#eval_jobs[@]}} evaluations; report job $report; every job in {out}/jobs.tsv"']
    return "\n".join(lines) + "\n"
