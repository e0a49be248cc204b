"""Content ids: a 64-bit hash of a passage's normalised text.

Why it exists: the same passage reaches training under several items (sources that repeat passages,
near-identical copies differing in case or spacing). The miner must never pick such a copy of an
item's positive as its negative, and the loss must not push a query away from a copy of its own
positive that another item brought into the batch. Both compare the same id, computed here:
NFKC, case-fold, whitespace collapsed (DESIGN.md §8), then BLAKE2b truncated to 8 bytes.

What it does not do: detect paraphrases or translations (different text, different id); an item's
translations are handled by the miner through the item itself, and never meet in one batch.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

_SPACE = re.compile(r"\s+")
NO_ID = 0
"""Stands for "no content id" (the hash is remapped off 0, so 0 never names a text)."""


def normalize_text(text: str) -> str:
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def content_id(text: str) -> int:
    """Signed 64-bit id of ``normalize_text(text)``; never ``NO_ID``."""
    digest = hashlib.blake2b(normalize_text(text).encode("utf-8"), digest_size=8).digest()
    value = int.from_bytes(digest, "little", signed=True)
    return value if value != NO_ID else 1
