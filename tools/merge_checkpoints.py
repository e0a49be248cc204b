"""Alias of ``hybridir merge`` (megatron_hybridir/cli/merge.py), kept so existing commands
and the Slurm plans' jobs run unchanged."""

import sys

from megatron_hybridir.cli.merge import main

if __name__ == "__main__":
    sys.exit(main())
