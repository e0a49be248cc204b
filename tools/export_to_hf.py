"""Alias of ``hybridir export`` (megatron_hybridir/cli/export.py), kept so existing commands
and the Slurm plans' jobs run unchanged."""

import sys

from megatron_hybridir.cli.export import main

if __name__ == "__main__":
    sys.exit(main())
