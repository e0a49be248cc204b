"""Alias of ``hybridir convert`` (megatron_hybridir/cli/convert.py), kept so existing commands
and the Slurm plans' jobs run unchanged."""

import sys

from megatron_hybridir.cli.convert import main

if __name__ == "__main__":
    sys.exit(main())
