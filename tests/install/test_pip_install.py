"""A non-editable ``pip install .`` into a new virtual environment runs the documented commands
through ``hybridir`` from a folder outside the repository: demo data, the MiniLM import, preprocess,
a few fine-tuning steps with the packaged ``examples/finetune_minilm.yaml``, export, evaluation, and
the quickstart's ``examples/demo_cpu.yaml`` (dry run).

Why a tier of its own: the editable install every other test uses finds recipes, configs and child
processes through the checkout, so a file left out of the package, or a path computed from the
repository, passes there and fails for a user. (About 1-2 min on an idle 2-core machine; ``-m "not
install"`` leaves it out.)

The new environment holds only this package; its dependencies come from the running environment
through a ``.pth`` file (``venv --system-site-packages`` would give the base interpreter's, without
torch), so nothing is downloaded.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from megatron_hybridir.cli.main import COMMANDS

pytestmark = pytest.mark.install

ROOT = Path(__file__).resolve().parents[2]
LANGUAGES = ["xa", "xb"]            # two of the demo's six: enough for every step, half the time


def _source_copy(dest: Path) -> Path:
    """The working tree's files (tracked and untracked-not-ignored), links kept: what ``pip install
    .`` of a checkout sees, without build/ and egg-info written into the checkout."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        src = ROOT / name
        if not src.exists() and not src.is_symlink():      # deleted, not yet committed
            continue
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / name, follow_symlinks=False)
    return dest


def _new_venv(venv: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c",
                                "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    parent = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (site / "parent-env.pth").write_text("\n".join(parent) + "\n")
    return venv / "bin"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(bin folder, environment, empty work folder outside the repository)."""
    tmp = tmp_path_factory.mktemp("install")
    source = _source_copy(tmp / "source")
    bin_dir = _new_venv(tmp / "venv")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", OMP_NUM_THREADS="1",
               CUDA_VISIBLE_DEVICES="")
    subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "--no-deps",
                    "--no-build-isolation", "--no-cache-dir", "--disable-pip-version-check",
                    "--quiet", "."], cwd=source, env=env, check=True)
    work = tmp / "work"
    work.mkdir()
    return bin_dir, env, work


def _run(installed, *args: str) -> str:
    bin_dir, env, work = installed
    proc = subprocess.run([str(bin_dir / args[0]), *args[1:]], cwd=work, env=env, text=True,
                          capture_output=True, timeout=1200)
    assert proc.returncode == 0, (f"{' '.join(args)} (in {work}) exit {proc.returncode}:\n"
                                  f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc.stdout + proc.stderr


def test_installed_package_runs_the_documented_commands_outside_the_repository(installed):
    bin_dir, _, work = installed
    venv = bin_dir.parent.resolve()
    where = _run(installed, "python", "-c", "import megatron_hybridir as m\n"
                 "from megatron_hybridir.demo import pipeline, finetune\n"
                 "print(m.__file__); print(pipeline.DEMO_CONFIG); print(finetune.FINETUNE_CONFIG)\n"
                 "print(finetune.minilm_path())").split()
    package, demo, finetune_config, minilm = map(Path, where)
    assert package.is_relative_to(venv), f"imported {package}, not the installed copy"
    for recipe in (demo, finetune_config):
        assert recipe.is_relative_to(venv) and recipe.is_file(), recipe

    listing = _run(installed, "hybridir", "--help")
    assert [line.split()[0] for line in listing.split("subcommands:\n")[1].split("\n\n")[0]
            .splitlines()] == list(COMMANDS)
    for alias in ("hybridir-train", "hybridir-evaluate"):                # the older names
        assert "usage:" in _run(installed, alias, "--help")

    _run(installed, "hybridir", "make-demo-data", "--output", "data")
    _run(installed, "hybridir", "convert", "--hf", str(minilm), "--output", "minilm",
         "--dtype", "fp32")
    out = _run(installed, "hybridir", "preprocess", "--sources", "data/train.jsonl",
               "--languages", *LANGUAGES, "--tokenizer", "minilm/tokenizer", "--output", "indexed",
               "--workers", "1", "--max-length", "query=32", "positive=96", "negative=96",
               "--prompt", "query=", "positive=", "negative=")
    items = json.loads((work / "indexed" / "manifest.json").read_text())["num_items"]
    assert items > 0 and f"wrote {items} items to indexed" in out

    # The README's MiniLM example names examples/finetune_minilm.yaml; there is none here.
    out = _run(installed, "hybridir", "train", "--config", "examples/finetune_minilm.yaml",
               "checkpoint.init_from=minilm", "data.path=indexed", "checkpoint.dir=ft",
               "training.train_steps=2")
    assert (f"examples/finetune_minilm.yaml is not a file here: using the packaged recipe "
            f"{finetune_config}") in out
    assert (work / "ft" / "checkpoints" / "step_00000002").is_dir()
    _run(installed, "hybridir", "export", "--checkpoint", "ft", "--output", "ft-hf")
    assert (work / "ft-hf" / "config_sentence_transformers.json").is_file()
    _run(installed, "hybridir", "evaluate", "benchmark=lareqa", "data=data/test/lareqa",
         "encoder.model=ft-hf", "output=eval", "progress=false",
         f"languages=[{','.join(LANGUAGES)}]")
    metrics = json.loads((work / "eval" / "results.json").read_text())["metrics"]
    for key in ("mono_mAP", "cross_mAP", "multi_mAP"):
        assert 0.0 <= metrics[key] <= 1.0 and math.isfinite(metrics[key]), (key, metrics)

    # The quickstart's recipe, as the README names it (the quickstart itself trains for minutes).
    out = _run(installed, "hybridir", "train", "--config", "examples/demo_cpu.yaml", "--dry-run",
               "model.vocab_size=1000")
    assert "layout: 2 GPUs" in out and f"using the packaged recipe {demo}" in out
