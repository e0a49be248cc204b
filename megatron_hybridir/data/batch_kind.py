"""The kind of a global batch: monolingual, cross-lingual or mixed (docs/design.md §2).

Why it exists: the sampler decides the kind, the collator stamps it on the token batch and the
trainer counts it in the metrics and checkpoints; one enum names the three cases for all of them.
It is an ``IntEnum`` with the values the sampler has always used (0, 1, 2), so the sampler's int8
kind arrays compare with it directly and an int read back from older state converts losslessly.

What it does not do: import torch (the sampler must not), or decide kinds (``sampler.py``).
"""

from __future__ import annotations

import enum


class BatchKind(enum.IntEnum):
    MONOLINGUAL = 0
    """Every pair's query and passage in the same language."""
    CROSS_LINGUAL = 1
    """Query language != passage language in every pair."""
    MIXED = 2
    """Query and passage languages drawn independently (equal or not)."""

    @property
    def label(self) -> str:
        """The name in metrics and checkpoints: ``monolingual``, ``cross-lingual``, ``mixed``."""
        return self.name.lower().replace("_", "-")
