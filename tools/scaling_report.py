"""Alias of ``hybridir scaling-report`` (megatron_hybridir/cli/scaling_report.py),
kept so existing commands and the Slurm plans' jobs run unchanged."""

import sys

from megatron_hybridir.cli.scaling_report import main

if __name__ == "__main__":
    sys.exit(main())
