"""Alias of ``hybridir experiment`` (megatron_hybridir/cli/experiment.py), kept so existing commands
and the Slurm plans' jobs run unchanged."""

import sys

from megatron_hybridir.cli.experiment import main

if __name__ == "__main__":
    sys.exit(main())
