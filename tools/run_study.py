"""Alias of ``hybridir study`` (megatron_hybridir/cli/study.py), kept so existing commands
and the Slurm plans' jobs run unchanged."""

import sys

from megatron_hybridir.cli.study import main

if __name__ == "__main__":
    sys.exit(main())
