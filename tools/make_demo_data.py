"""Alias of ``hybridir make-demo-data`` (megatron_hybridir/cli/make_demo_data.py),
kept so existing commands and the Slurm plans' jobs run unchanged."""

import sys

from megatron_hybridir.cli.make_demo_data import main

if __name__ == "__main__":
    sys.exit(main())
