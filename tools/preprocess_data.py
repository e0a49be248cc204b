"""Alias of ``hybridir preprocess`` (megatron_hybridir/cli/preprocess.py), kept so existing commands
and the Slurm plans' jobs run unchanged."""

import sys

from megatron_hybridir.cli.preprocess import main

if __name__ == "__main__":
    sys.exit(main())
