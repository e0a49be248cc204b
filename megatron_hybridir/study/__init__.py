"""The size x alpha study: grid runner, budget rule, per-query scoring, statistics, report, Slurm
plan, scaling report, and the alpha / negatives experiments on the demo benchmark."""
