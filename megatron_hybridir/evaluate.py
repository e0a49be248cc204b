"""``python -m megatron_hybridir.evaluate [--config eval.yaml] key=value ...`` (console: hybridir evaluate).

Runs without Megatron-Core: torch, sentence-transformers / transformers, FAISS and ir_measures only.
Examples::

    python -m megatron_hybridir.evaluate benchmark=xquad-r data=data/xquad-r \\
        encoder.model=runs/export output=runs/eval/xquad-r
    python -m megatron_hybridir.evaluate benchmark=beir data=data/beir/scifact \\
        encoder.model=runs/export index=hnsw encoder.devices='[cuda:0,cuda:1]'
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from megatron_hybridir.config import ConfigError
from megatron_hybridir.config.help import format_help
from megatron_hybridir.evaluation.benchmarks import choices_help
from megatron_hybridir.evaluation.config import EvalConfig
from megatron_hybridir.evaluation.encoder import EmbeddingError
from megatron_hybridir.evaluation.loading import load_eval_config
from megatron_hybridir.evaluation.runner import evaluate
from megatron_hybridir.evaluation.tasks import EvalDataError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     epilog="benchmark= one of:\n" + choices_help()
                                     + "\n\nsettings (key=value or in --config):\n"
                                     + format_help(EvalConfig),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML file with EvalConfig fields")
    parser.add_argument("overrides", nargs="*", help="key=value, e.g. encoder.model=runs/export")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = load_eval_config(args.config, args.overrides)
        results = evaluate(config)
    except (ConfigError, EvalDataError, EmbeddingError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(Path(config.output, "results.md").read_text())
    print(f"wrote {config.output}/results.json")
    return 0 if results else 1


if __name__ == "__main__":
    sys.exit(main())
