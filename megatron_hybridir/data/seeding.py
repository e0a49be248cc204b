"""The one seeding rule for every stream of draws in the data layer: a numpy generator keyed by
integers (seed, step, DP rank, purpose...), so each draw is a pure function of its keys.

Why it exists: the hybrid sampler and the same-source batch draws must share the rule (resume is
exact only if both are pure functions of the same keys), and neither should import the other for
it. What it does not do: hold state; numpy only, no torch.
"""

from __future__ import annotations

import numpy as np


def keyed_rng(*keys: int) -> np.random.Generator:
    """A generator seeded by ``keys`` alone (PCG64 over a SeedSequence of the integers)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(k) for k in keys])))
