"""Every numeric and choice field is validated at load time, naming the field (issue 16 item 9);
the world size and data.path are checked before any process group or model exists."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from megatron_hybridir.config import ConfigError, load_config, validate, validate_paths

ROOT = Path(__file__).resolve().parents[2]

BAD_VALUES = [
    ("training.train_steps=-5", "training.train_steps: must be >= 1, got -5"),
    ("training.train_steps=0", "training.train_steps: must be >= 1, got 0"),
    ("training.log_interval=0", "training.log_interval: must be >= 1, got 0"),
    ("data.global_batch_size=0", "data.global_batch_size: must be >= 1, got 0"),
    ("seq_length=0", "seq_length: must be >= 1, got 0"),
    ("model.vocab_size=0", "model.vocab_size: must be >= 1, got 0"),
    ("optim.lr=-0.001", "optim.lr: must be > 0, got -0.001"),
    ("optim.lr=.nan", "optim.lr: must be a finite number, got nan"),
    ("optim.lr=.inf", "optim.lr: must be a finite number, got inf"),
    ("optim.lr=0", "optim.lr: must be > 0, got 0.0"),
    ("optim.min_lr=0.1", "optim.min_lr: 0.1 is above optim.lr=0.0001"),
    ("optim.adam_beta2=1.0", "optim.adam_beta2: must lie in [0, 1), got 1.0"),
    ("optim.weight_decay=-1", "optim.weight_decay: must be >= 0, got -1.0"),
    ("optim.clip_grad=-1", "optim.clip_grad: must be >= 0, got -1.0"),
    ("optim.warmup_steps=-1", "optim.warmup_steps: must be >= 0, got -1"),
    ("loss.temperature=.nan", "loss.temperature: must be a finite number, got nan"),
    ("loss.num_hard_negatives=-1", "loss.num_hard_negatives: must be >= 0, got -1"),
    ("data.alpha=.nan", "data.alpha: must be a finite number, got nan"),
    ("data.micro_batch_size=0", "data.micro_batch_size: must be >= 1, got 0"),
    ("data.pad_to_multiple=0", "data.pad_to_multiple: must be >= 1, got 0"),
    ("data.language_choice=random", "data.language_choice: expected batch or example, got 'random'"),
    ("data.language_temperature=-1", "data.language_temperature: must be >= 0, got -1.0"),
    ("data.source_weights=[1, -1]", "data.source_weights: weights must be >= 0 and not all 0"),
    ("data.source_weights=[0, 0]", "data.source_weights: weights must be >= 0 and not all 0"),
    ("data.source_weights=[1, .nan]", "data.source_weights: must be a finite number, got nan"),
    ("model.num_attention_heads=0", "model.num_attention_heads: must be >= 1, got 0"),
    ("model.hidden_size=-64", "model.hidden_size: must be >= 1, got -64"),
    ("model.ffn_hidden_size=0", "model.ffn_hidden_size: must be >= 1, got 0"),
    ("model.num_query_groups=0", "model.num_query_groups: must be >= 1, got 0"),
    ("model.max_position_embeddings=0", "model.max_position_embeddings: must be >= 1, got 0"),
    ("model.make_vocab_size_divisible_by=0", "model.make_vocab_size_divisible_by: must be >= 1"),
    ("model.layernorm_epsilon=0", "model.layernorm_epsilon: must be > 0, got 0.0"),
    ("model.rotary_base=-1", "model.rotary_base: must be > 0, got -1.0"),
    ("model.hidden_dropout=1.5", "model.hidden_dropout: must lie in [0, 1), got 1.5"),
    ("model.attention_dropout=-0.1", "model.attention_dropout: must lie in [0, 1), got -0.1"),
    ("model.init_method_std=.inf", "model.init_method_std: must be a finite number, got inf"),
    ("model.latent_num_heads=0", "model.latent_num_heads: must be >= 1, got 0"),
    ("parallel.tensor_model_parallel_size=0", "parallel.tensor_model_parallel_size: must be >= 1"),
    ("training.max_skipped_steps=-1", "training.max_skipped_steps: must be >= 0, got -1"),
    ("training.exit_interval=-2", "training.exit_interval: must be >= 0, got -2"),
    ("checkpoint.keep_last=0", "checkpoint.keep_last: must be >= 1, got 0"),
    ("checkpoint.save_interval=-1", "checkpoint.save_interval: must be >= 0, got -1"),
    ("seed=-1", "seed: must be >= 0, got -1"),
    ("checkpoint.keep_last=.inf", "checkpoint.keep_last: expected int, got inf"),   # found by hypothesis
    ("training.train_steps=.nan", "training.train_steps: expected int, got nan"),
    ("model.position_offset=2", "model.position_offset: position offsets need model.layer_kind=bert"),
    ("data.micro_batch_tokens=0", "data.micro_batch_tokens: "),
    ("data.micro_batch_tokens=4096", "data.micro_batch_tokens: 4096 needs data.packing=true"),
]


def test_token_budget_needs_gradcache_and_room_for_one_pair():
    base = ["model.preset=tiny", "data.packing=true", "seq_length=128", "loss.num_hard_negatives=2"]
    with pytest.raises(ConfigError, match="data.micro_batch_tokens: 4096 needs "
                                          "training.gradcache=true"):
        load_config(None, [*base, "data.micro_batch_tokens=4096"])
    with pytest.raises(ConfigError, match=r"data.micro_batch_tokens: 500 cannot hold one pair of "
                                          r"the longest rows: seq_length 128 x \(2 \+ "
                                          r"loss.num_hard_negatives=2\) = 512 tokens"):
        load_config(None, [*base, "training.gradcache=true", "data.micro_batch_tokens=500"])
    config = load_config(None, [*base, "training.gradcache=true", "data.micro_batch_tokens=512"])
    assert config.data.micro_batch_tokens == 512 and config.data.packing


@pytest.mark.parametrize("override,message", BAD_VALUES)
def test_bad_values_are_rejected_at_load_naming_the_field(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(None, ["model.preset=tiny", override])
    assert str(err.value).startswith(message)


def test_world_size_must_fit_the_layout():
    config = load_config(ROOT / "examples" / "tiny_cpu.yaml")
    with pytest.raises(ConfigError) as err:
        validate(config, world_size=1)
    assert str(err.value) == (
        "parallel: world size 1 is not divisible by parallel.tensor_model_parallel_size x "
        "parallel.pipeline_model_parallel_size = 2 x 1 = 2; start a multiple of 2 processes (e.g. "
        "torchrun --nproc_per_node 2 -m megatron_hybridir.train ...) or change the parallel layout")
    with pytest.raises(ConfigError, match=r"data.global_batch_size: 16 is not divisible by "
                                          r"data.micro_batch_size \(4\) x data-parallel size \(3\)"):
        validate(config, world_size=6)
    validate(config, world_size=4)


def test_missing_data_path_is_named(tmp_path):
    config = load_config(None, ["model.preset=tiny", f"data.path={tmp_path / 'nope'}"])
    with pytest.raises(ConfigError, match=rf"data.path: {tmp_path / 'nope'} does not exist"):
        validate_paths(config)
    config.data.path = str(tmp_path)
    with pytest.raises(ConfigError, match=rf"data.path: {tmp_path} has no manifest.json"):
        validate_paths(config)


def _train_cli(*args, env_extra=None):
    import os

    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    for key in ("RANK", "WORLD_SIZE", "SLURM_PROCID", "SLURM_NTASKS"):
        env.pop(key, None)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "megatron_hybridir.train", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_cli_with_one_process_for_a_two_process_recipe_stops_with_the_launch_command():
    done = _train_cli("--config", "examples/tiny_cpu.yaml")
    assert done.returncode == 2
    assert ("error: parallel: world size 1 is not divisible by parallel.tensor_model_parallel_size"
            " x parallel.pipeline_model_parallel_size = 2 x 1 = 2; start a multiple of 2 processes "
            "(e.g. torchrun --nproc_per_node 2 -m megatron_hybridir.train ...)") in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_cli_bad_value_and_missing_data_stop_before_the_model(tmp_path):
    done = _train_cli("model.preset=tiny", "training.train_steps=-5")
    assert done.returncode == 2 and "error: training.train_steps: must be >= 1, got -5" in done.stderr
    done = _train_cli("model.preset=tiny", f"data.path={tmp_path / 'nope'}",
                      f"checkpoint.dir={tmp_path / 'run'}")
    assert done.returncode == 2 and f"error: data.path: {tmp_path / 'nope'} does not exist" in done.stderr
    assert "building" not in done.stderr.lower() and not (tmp_path / "run").exists()


@pytest.mark.parametrize("field", ["checkpoint.dir", "checkpoint.init_from", "data.path"])
def test_an_empty_path_is_refused_not_read_as_unset(field):
    """``checkpoint.dir=$RUN_DIR`` with the variable empty trained without saving (issue 24)."""
    with pytest.raises(ConfigError, match=rf"^{field}: empty path ''; name a folder, or leave it "
                                          rf"unset \(null\) for none$"):
        load_config(None, [f"{field}="])


def test_gradcache_with_virtual_pipeline_stages_is_refused():
    # Its gradients differ from the whole batch's (a parity run, packed or not): refuse, not train.
    layout = ["model.preset=tiny", "model.num_layers=4", "parallel.pipeline_model_parallel_size=2",
              "parallel.virtual_pipeline_model_parallel_size=2"]
    with pytest.raises(ConfigError, match=r"^training.gradcache: true with parallel.virtual_pipeline"
                                          r"_model_parallel_size=2 is not supported"):
        load_config(None, [*layout, "training.gradcache=true"])
    assert load_config(None, layout).parallel.virtual_pipeline_model_parallel_size == 2
