"""Alias of ``hybridir build-data`` (megatron_hybridir/cli/build_data.py), kept so existing commands
and the Slurm plans' jobs run unchanged."""

import sys

from megatron_hybridir.cli.build_data import main

if __name__ == "__main__":
    sys.exit(main())
