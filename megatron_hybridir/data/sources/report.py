"""What a training-data build kept, dropped and why: one :class:`BuildReport` per build.

Why it exists: converting a public collection silently loses things (a query without a
translation, a duplicate id, a passage equal to a test query). Every such case is counted here
under a reason, with the place it first happened, and written next to the records as JSON, so a
build that kept 60% of its input says so.

Three kinds of count, kept apart so the item arithmetic holds (``candidates == kept +
sum(dropped)``):

- ``dropped``: whole candidate items not written (no positive, leaked, malformed with
  ``on_error="skip"``);
- ``skipped``: input lines or records that never became a candidate (duplicate ids, unreferenced
  or malformed lines with ``on_error="skip"``);
- ``trimmed``: parts removed from items that passed the source's checks (a language without a
  translation, a negative that is also a positive, extra positives); counted before the leakage
  check, so an item dropped as leaked afterwards keeps its trims in the counts.

What it does not do: decide what to drop (the source modules and ``leakage.py`` do).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional


@dataclass
class BuildReport:
    source: str
    output: str = ""
    candidates: int = 0
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    trimmed: Counter = field(default_factory=Counter)
    first_location: dict = field(default_factory=dict)
    languages: Counter = field(default_factory=Counter)
    """Kept items per language with both a query and a positive."""
    leakage: dict = field(default_factory=dict)
    """Per evaluation benchmark: its number of queries and the texts / items that matched them."""
    settings: dict = field(default_factory=dict)

    def _note(self, counter: Counter, reason: str, where: Optional[str], count: int = 1) -> None:
        counter[reason] += count
        if where is not None:
            self.first_location.setdefault(reason, where)

    def drop(self, reason: str, where: Optional[str] = None) -> None:
        self._note(self.dropped, reason, where)

    def skip(self, reason: str, where: Optional[str] = None, count: int = 1) -> None:
        self._note(self.skipped, reason, where, count)

    def trim(self, reason: str, where: Optional[str] = None, count: int = 1) -> None:
        self._note(self.trimmed, reason, where, count)

    def to_dict(self) -> dict:
        return {"source": self.source, "output": self.output, "candidates": self.candidates,
                "kept": self.kept, "dropped": dict(sorted(self.dropped.items())),
                "skipped": dict(sorted(self.skipped.items())),
                "trimmed": dict(sorted(self.trimmed.items())),
                "first_location": dict(sorted(self.first_location.items())),
                "languages": dict(sorted(self.languages.items())), "leakage": self.leakage,
                "settings": self.settings}

    def write(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n")

    def summary(self) -> str:
        lines = [f"{self.source}: {self.candidates} candidate items, kept {self.kept}"
                 + (f" -> {self.output}" if self.output else "")]
        for title, counter in (("dropped", self.dropped), ("skipped input", self.skipped),
                               ("trimmed from kept items", self.trimmed)):
            for reason, count in sorted(counter.items()):
                where = self.first_location.get(reason)
                lines.append(f"  {title}: {count} ({reason}" + (f"; first at {where})" if where
                                                                else ")"))
        for name, entry in sorted(self.leakage.items()):
            lines.append(f"  leakage vs {name} ({entry['queries']} evaluation queries): "
                         f"{entry['items']} item(s) matched, texts {entry['texts']}")
        langs = ", ".join(f"{k}={v}" for k, v in sorted(self.languages.items()))
        lines.append(f"  items per language: {langs or 'none'}")
        return "\n".join(lines)
