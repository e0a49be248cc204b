"""Checked reading shared by the evaluation loaders: ids seen once, text that is Unicode.

Why it exists: every loader (``loaders.py``, ``lareqa_loader.py``) must stop at a repeated id or a
string no tokenizer accepts, with the same message shape (file, line or place, field); one copy of
each rule keeps them identical. What it does not do: read files.
"""

from __future__ import annotations

from megatron_hybridir.evaluation.tasks import EvalDataError


class Unique:
    """Ids seen so far and where; a repeated id stops with both places (a dict would silently keep
    the last one, replacing one query or document by another)."""

    def __init__(self, kind: str):
        self.kind, self.first = kind, {}

    def add(self, key, where: str) -> None:
        if key in self.first:
            raise EvalDataError(f"{where}: duplicate {self.kind} {key!r} (first at "
                                f"{self.first[key]})")
        self.first[key] = where


def check_unicode(text: str, where: str, field: str) -> None:
    """JSON escapes can encode lone surrogates, which no tokenizer or UTF-8 writer accepts."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise EvalDataError(f"{where}: field {field!r} holds a lone surrogate "
                            f"({text[err.start]!r} at character {err.start}), not Unicode text") from None
