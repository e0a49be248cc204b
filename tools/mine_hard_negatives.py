"""Alias of ``hybridir mine`` (megatron_hybridir/cli/mine.py), kept so existing commands
and the Slurm plans' jobs run unchanged."""

import sys

from megatron_hybridir.cli.mine import main

if __name__ == "__main__":
    sys.exit(main())
