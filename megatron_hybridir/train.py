"""``python -m megatron_hybridir.train --config run.yaml key.sub=value ...`` (console: hybridir-train).

Thin entry point: parse the config path and dotted overrides, then call ``training.trainer.train``.
"""

from __future__ import annotations

import logging
import sys

from megatron_hybridir.config import load_config
from megatron_hybridir.runtime.distributed import shutdown
from megatron_hybridir.training.trainer import train


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


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    path, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    config = load_config(path, overrides)
    try:
        result = train(config)
    finally:
        shutdown()
    return 0 if result.last_step >= 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
