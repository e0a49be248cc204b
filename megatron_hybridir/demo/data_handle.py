"""What the demo's data step hands to the steps after it: one frozen record instead of a dict.

Why it exists: ``pipeline.prepare_data`` returns the folders it prepared and the facts read from
them, and every later step (training, mining, export, evaluation, the study's experiments and
grid) reads them back. As a dict, a misspelt key was found only where it was read, and a step
could change the record another step still held. Steps that derive data (the mined or random-
negative corpus, a run continuing from a first pass) make a changed copy with
``dataclasses.replace``. What it does not do: prepare anything (``pipeline.prepare_data``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional


@dataclass(frozen=True)
class DemoData:
    root: Path
    """The generated corpus (``summary.json``, ``train.jsonl``, ``test/``)."""
    tokenizer: Path
    """The tokenizer folder the data were tokenized with (its ``tokenizer.json``)."""
    indexed: Path
    """The Megatron indexed training data (``manifest.json``) a run trains on."""
    vocab_size: int
    """The tokenizer's vocabulary size (``model.vocab_size``)."""
    languages: tuple[str, ...]
    """The corpus's languages, in its order."""
    init_from: Optional[Path] = None
    """A checkpoint the training run on this data continues from (the mining first pass)."""

    def __post_init__(self):
        # A string would pass as a sequence of one-letter languages.
        if isinstance(self.languages, str) or not all(isinstance(code, str) for code in self.languages):
            raise TypeError(f"DemoData.languages: expected a sequence of language codes, got "
                            f"{self.languages!r}")
        object.__setattr__(self, "languages", tuple(self.languages))
