"""The size x alpha study: grid runner, budget rule, per-query scoring, statistics, report, Slurm plan."""
