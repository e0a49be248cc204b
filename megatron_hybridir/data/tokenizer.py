"""Tokenizers for preprocessing: a Hugging Face tokenizer folder/file or a SentencePiece model.

Why it exists: preprocessing must run in worker processes without importing transformers, and
the manifest must record exactly which tokenizer produced the ids (a content hash), so a model is
never trained on ids from a different vocabulary.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional


class Tokenizer:
    """``encode(texts) -> list[list[int]]`` over either backend, plus special ids and a hash."""

    def __init__(self, path: str):
        self.path = str(path)
        p = Path(path)
        if p.is_dir():
            p = p / "tokenizer.json"
        if not p.exists():
            raise FileNotFoundError(f"tokenizer: {path} has no tokenizer.json or SentencePiece model")
        self.file = p
        self.hash = hashlib.sha256(p.read_bytes()).hexdigest()[:16]
        if p.suffix == ".model":
            import sentencepiece as spm

            self._sp = spm.SentencePieceProcessor(model_file=str(p))
            self._hf = None
            self.vocab_size = self._sp.get_piece_size()
            self.eos_id = self._sp.eos_id()
            self.pad_id = self._sp.pad_id() if self._sp.pad_id() >= 0 else 0
        else:
            from tokenizers import Tokenizer as HFTokenizer

            self._hf = HFTokenizer.from_file(str(p))
            self._sp = None
            self.vocab_size = self._hf.get_vocab_size()
            self.eos_id = self._special(["</s>", "<|endoftext|>", "<|end_of_text|>", "[SEP]"])
            self.pad_id = self._special(["<pad>", "[PAD]", "<|endoftext|>"]) or 0

    def _special(self, names: list[str]) -> Optional[int]:
        for name in names:
            token_id = self._hf.token_to_id(name)
            if token_id is not None:
                return token_id
        return None

    def encode(self, texts: list[str]) -> list[list[int]]:
        if self._sp is not None:
            return self._sp.encode(texts)
        return [e.ids for e in self._hf.encode_batch(texts, add_special_tokens=False)]

    def encode_with_special_tokens(self, texts: list[str], max_length: int) -> list[list[int]]:
        """Texts truncated to ``max_length`` tokens *including* the special tokens the tokenizer's
        post-processor adds (``<s> ... </s>`` for XLM-R, ``[CLS] ... [SEP]`` for BERT) — the ids
        sentence-transformers feeds the exported model at inference."""
        processor = self._hf.post_processor if self._hf is not None else None
        if processor is None:
            raise ValueError(f"tokenizer {self.path}: special tokens need a tokenizer.json whose "
                             f"post-processor adds them (BERT / XLM-R tokenizers have one)")
        room = max_length - processor.num_special_tokens_to_add(False)
        out = []
        for encoding in self._hf.encode_batch(texts, add_special_tokens=False):
            encoding.truncate(room)
            out.append(self._hf.post_process(encoding, None, True).ids)
        return out
