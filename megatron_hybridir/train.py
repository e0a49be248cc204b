"""``python -m megatron_hybridir.train --config run.yaml key.sub=value ...`` (console: hybridir train).

``--help`` lists every config field (dotted name, type or choices, default, docstring), read from
the schema (``config/help.py``). ``--dry-run [--world-size N]`` prints the parallel layout, parameters, memory per GPU and FLOPs per
step without starting processes or touching a GPU.

Thin entry point: parse the config path and dotted overrides, then call ``training.trainer.train``.
"""

from __future__ import annotations

import logging
import sys

from megatron_hybridir.checkpointing.checksums import CheckpointCorruptError
from megatron_hybridir.checkpointing.errors import CheckpointError
from megatron_hybridir.config import ConfigError
from megatron_hybridir.config.help import format_help
from megatron_hybridir.config.initial_weights import check_initial_weights
from megatron_hybridir.recipes import resolve_config
from megatron_hybridir.runtime.distributed import shutdown
from megatron_hybridir.training.checkpoint import CheckpointSaveError
from megatron_hybridir.training.run_config import load_run_config
from megatron_hybridir.training.run_lock import RunDirLockedError
from megatron_hybridir.training.trainer import train


def _pop_flag(args: list[str], name: str, *, value: bool) -> str | bool | None:
    if name not in args:
        return None
    i = args.index(name)
    if not value:
        del args[i]
        return True
    if i + 1 >= len(args):
        raise SystemExit(f"{name} needs a value")
    out = args[i + 1]
    del args[i:i + 2]
    return out


def parse_args(argv: list[str]) -> tuple[str | None, list[str]]:
    args = list(argv)
    path = None
    if "--config" in args:
        i = args.index("--config")
        if i + 1 >= len(args):
            raise SystemExit("--config needs a YAML path")
        path = args[i + 1]
        del args[i:i + 2]
    unknown = [a for a in args if a.startswith("--")]
    if unknown:
        raise SystemExit(f"unknown option(s) {unknown}; use --config PATH and key.sub=value")
    return path, args


USAGE = """usage: hybridir train [--config RUN.yaml] [key.sub=value ...] [--dry-run [--world-size N]]
       (the same: python -m megatron_hybridir.train ..., hybridir-train ...)

RUN.yaml: a file, or a packaged recipe as examples/NAME.yaml (from any folder).

Train (or resume) an embedding model. A run is a YAML file plus dotted overrides of these fields:
"""


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = list(sys.argv[1:] if argv is None else argv)
    if "--help" in args or "-h" in args:
        print(USAGE + format_help())
        return 0
    dry_run = _pop_flag(args, "--dry-run", value=False)
    world = _pop_flag(args, "--world-size", value=True)
    path, overrides = parse_args(args)
    try:
        path = resolve_config(path) if path else None   # examples/NAME.yaml from any folder
        config = load_run_config(path, overrides)   # init_from resolved: dry run and training alike
        # Before the dry run too: a recipe that would not launch should not look ready.
        check_initial_weights(config, source=path or "the command line")
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if dry_run:
        from megatron_hybridir.training.dry_run import estimate, format_estimate

        p = config.parallel
        size = int(world) if world else p.tensor_model_parallel_size * p.pipeline_model_parallel_size
        print(format_estimate(estimate(config, world_size=size)))
        return 0
    try:
        train(config)  # a preempted run also returns normally: it saved, and will be requeued
    except (ConfigError, CheckpointError, CheckpointCorruptError, RunDirLockedError,
            CheckpointSaveError) as err:
        # Config: raised before any process group exists (world size, data.path). Checkpoint: a
        # folder that cannot be used (named), a file that failed its checksum (the message names
        # it and the last good step), an unsafe .metadata, or a save that failed (cause and
        # file). Lock: another job holds checkpoint.dir (named).
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
