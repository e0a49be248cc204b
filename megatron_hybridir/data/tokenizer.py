"""Tokenizers for preprocessing: the ids a text gets at inference, and a hash naming the tokenizer.

Why it exists: training must see exactly the ids the exported sentence-transformers model computes
for the same text, prompt and max length — the same special tokens (``[CLS] ... [SEP]``, ``<s> ...
</s>``, Llama 3's BOS), the same truncation, and no padding. So the tokenizer is the one
``transformers`` builds from the folder (its post-processor, rebuilt from ``tokenizer_config.json``'s
``add_bos_token`` / ``add_eos_token`` where the class does that; export copies the tokenizer
through the same ``AutoTokenizer``), with the padding and truncation that ``tokenizer.json`` files
often carry (all-MiniLM-L6-v2: ``Fixed(128)`` padding, truncation 128) switched off; truncation is
then applied per call as transformers does it (``longest_first``, the tokenizer's truncation side,
special tokens counted inside the limit). A SentencePiece ``.model`` is read with sentencepiece:
plain pieces, no special tokens, which is what the demo's ``tokenizer.json`` (written from the same
pieces, no post-processor) gives too.

The state that workers need is a plain dict (the tokenizer's JSON), so worker processes never
import transformers. The hash is of the tokenizer's *content* (its JSON with padding and truncation
cleared; the SentencePiece model's bytes), so a tokenizer re-saved by export hashes the same.

What it does not do: pad (the collator pads per micro-batch and masks the padding) or choose prompts.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Optional

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def tokenizer_hash(path: str | Path) -> str:
    """Content hash of the tokenizer at ``path`` (folder, tokenizer.json or .model), 16 hex."""
    return Tokenizer(path).hash


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _load_hf(p: Path) -> tuple[str, str, Optional[int], list[str]]:
    """(tokenizer JSON, truncation side, pad id, files read) as transformers sees the folder."""
    if p.is_dir() and (p / "tokenizer_config.json").exists():
        from transformers import AutoTokenizer

        hf = AutoTokenizer.from_pretrained(str(p))
        if not hf.is_fast:
            raise ValueError(f"tokenizer {p}: transformers loads it as a slow tokenizer "
                             f"({type(hf).__name__}); a fast tokenizer (tokenizer.json) is needed")
        files = [name for name in TOKENIZER_FILES if (p / name).exists()]
        return hf.backend_tokenizer.to_str(), hf.truncation_side, hf.pad_token_id, files
    file = p / "tokenizer.json" if p.is_dir() else p
    if not file.exists():
        raise FileNotFoundError(f"tokenizer: {p} has no tokenizer.json or SentencePiece model")
    return file.read_text(encoding="utf-8"), "right", None, [file.name]


class Tokenizer:
    """``encode(texts, max_length)`` -> inference ids, over a HF tokenizer or a SentencePiece model.

    Built from a path, or (in workers) from ``state`` — a picklable dict of what the path gave.
    """

    def __init__(self, path: str | Path, *, state: Optional[dict] = None):
        self.path = str(path)
        if state is None:
            state = self._read(Path(path))
        self.state = state
        self.hash: str = state["hash"]
        self.files: dict = state["files"]
        self.truncation_side: str = state["truncation_side"]
        if state["kind"] == "sentencepiece":
            import sentencepiece as spm

            self._sp = spm.SentencePieceProcessor(model_file=state["model_file"])
            self._hf = None
            self.vocab_size = self._sp.get_piece_size()
            self.eos_id = self._sp.eos_id() if self._sp.eos_id() >= 0 else None
            self.pad_id = self._sp.pad_id() if self._sp.pad_id() >= 0 else 0
        else:
            from tokenizers import Tokenizer as HFTokenizer

            self._sp = None
            self._hf = HFTokenizer.from_str(state["json"])
            self._hf.no_padding()
            self._hf.no_truncation()
            self.vocab_size = self._hf.get_vocab_size()
            self.eos_id = self._special(["</s>", "<|endoftext|>", "<|end_of_text|>", "[SEP]"])
            self.pad_id = state["pad_id"]
            if self.pad_id is None:
                self.pad_id = self._special(["<pad>", "[PAD]", "<|endoftext|>"]) or 0

    @staticmethod
    def _read(p: Path) -> dict:
        if p.suffix == ".model":
            if not p.exists():
                raise FileNotFoundError(f"tokenizer: {p} does not exist")
            digest = _sha(p.read_bytes())
            return {"kind": "sentencepiece", "model_file": str(p), "hash": digest,
                    "files": {p.name: digest}, "truncation_side": "right", "pad_id": None}
        text, side, pad_id, names = _load_hf(p)
        from tokenizers import Tokenizer as HFTokenizer

        canonical = HFTokenizer.from_str(text)
        canonical.no_padding()
        canonical.no_truncation()
        folder = p if p.is_dir() else p.parent
        files = {name: _sha((folder / name).read_bytes()) for name in names}
        return {"kind": "hf", "json": canonical.to_str(), "hash": _sha(canonical.to_str().encode()),
                "files": files, "truncation_side": side, "pad_id": pad_id}

    def _special(self, names: list[str]) -> Optional[int]:
        for name in names:
            token_id = self._hf.token_to_id(name)
            if token_id is not None:
                return token_id
        return None

    @property
    def num_special_tokens(self) -> int:
        """Tokens the post-processor adds to one text (2 for BERT / XLM-R, 1 for Llama 3)."""
        if self._hf is None or self._hf.post_processor is None:
            return 0
        return self._hf.post_processor.num_special_tokens_to_add(False)

    @property
    def special_tokens(self) -> list[str]:
        """The special tokens wrapped around every text, in order (e.g. ``["[CLS]", "[SEP]"]``)."""
        if self._hf is None:
            return []
        return self._hf.encode("", add_special_tokens=True).tokens

    def encode(self, texts: list[str], max_length: Optional[int] = None) -> list[list[int]]:
        """The ids sentence-transformers / transformers compute for each text with
        ``truncation=True, max_length=max_length``: special tokens added by the tokenizer's own
        post-processor and kept when truncating (the text is cut), no padding."""
        if max_length is not None and max_length <= self.num_special_tokens:
            raise ValueError(f"tokenizer {self.path}: max_length {max_length} leaves no room for "
                             f"text beside its {self.num_special_tokens} special tokens")
        if self._sp is not None:
            ids = self._sp.encode(list(texts))
            return [row[:max_length] for row in ids] if max_length is not None else ids
        if max_length is None:
            self._hf.no_truncation()
        else:
            self._hf.enable_truncation(max_length, stride=0, strategy="longest_first",
                                       direction=self.truncation_side)
        return [e.ids for e in self._hf.encode_batch(list(texts), add_special_tokens=True)]
