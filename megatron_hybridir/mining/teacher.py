"""Teacher scores for mined records: a cross-encoder or a bi-encoder scores each query's positive
and mined negatives, written as the record's ``teacher_scores`` (distillation in training).

Why it exists: distillation (``distillation.py``) needs the teacher's score of exactly the passages
a training item carries, in the order the reader aligns them: per language, the positive first,
then the negatives that have a text in that language, in record order (``data/readers.py``). The
miner knows those passages when it writes a record, so it scores them there, in blocks of records
(one batched teacher call per block).

Teachers (``--teacher``):
  cross-encoder:<folder>   a sentence-transformers ``CrossEncoder``; its raw logits (no sigmoid:
                           margins of logits are what MarginMSE and a temperature expect)
  bi-encoder               the mining model itself: cosine of query and passage embeddings
  bi-encoder:<folder>      another HF / sentence-transformers embedding model, same prompts

What it does not do: choose negatives (``select.py``) or cache scores (a rerun scores again; the
mining itself is resumed from its parts).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from megatron_hybridir.data.readers import DataError


class CrossEncoderTeacher:
    def __init__(self, folder: str, *, batch_size: int, max_length: Optional[int]):
        import torch
        from sentence_transformers import CrossEncoder

        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = CrossEncoder(folder, device=device, max_length=max_length,
                                  local_files_only=True, activation_fn=torch.nn.Identity())
        if self.model.num_labels != 1:
            raise DataError(f"mining.teacher: cross-encoder {folder} has {self.model.num_labels} "
                            f"labels; a relevance teacher needs one score per pair")
        self.batch_size = batch_size

    def score(self, queries: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        scores = self.model.predict(list(zip(queries, passages)), batch_size=self.batch_size,
                                    show_progress_bar=False, convert_to_numpy=True)
        return np.asarray(scores, dtype=np.float32).reshape(len(queries))


class BiEncoderTeacher:
    """Cosine (normalised encoders) of each query with its passage, prompts as in mining."""

    def __init__(self, encoder):
        self.encoder = encoder

    def score(self, queries: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        q = np.asarray(self.encoder.encode_queries(list(queries)), dtype=np.float32)
        p = np.asarray(self.encoder.encode_passages_in_order(list(passages)), dtype=np.float32)
        return np.einsum("ij,ij->i", q, p).astype(np.float32)


def parse_teacher(spec: str) -> tuple[str, str]:
    """(kind, folder or "") of a ``--teacher`` value; checked before any mining work."""
    kind, _, folder = spec.partition(":")
    if kind not in ("cross-encoder", "bi-encoder") or (kind == "cross-encoder" and not folder):
        raise DataError(f"mining.teacher: expected cross-encoder:<folder>, bi-encoder or "
                        f"bi-encoder:<folder>, got {spec!r}")
    if folder and not Path(folder).is_dir():
        raise DataError(f"mining.teacher: {folder} is not a model folder")
    return kind, folder


def make_teacher(spec: str, *, mining_encoder, encoder_for, batch_size: int,
                 max_length: Optional[int]):
    """The teacher named by ``spec`` (module docstring); ``encoder_for(folder)`` builds an
    evaluation encoder with the mining prompts, ``mining_encoder()`` the mining model's."""
    kind, folder = parse_teacher(spec)
    if kind == "cross-encoder":
        return CrossEncoderTeacher(folder, batch_size=batch_size, max_length=max_length)
    return BiEncoderTeacher(encoder_for(folder) if folder else mining_encoder())


def score_records(teacher, items: list, mined: list[dict[str, list[str]]]) -> list[dict]:
    """Per item: {lang: [score(positive), score(negative_0), ...]} for every mined language, in
    one batched teacher call for the whole block."""
    queries, passages, keys = [], [], []
    for n, (item, texts) in enumerate(zip(items, mined)):
        for lang, negatives in texts.items():
            for passage in [item.positive[lang], *negatives]:
                queries.append(item.query[lang])
                passages.append(passage)
                keys.append((n, lang))
    scores = teacher.score(queries, passages) if queries else np.zeros(0, dtype=np.float32)
    if not np.isfinite(scores).all():
        raise DataError("mining.teacher: the teacher returned non-finite scores")
    out: list[dict] = [{} for _ in items]
    for (n, lang), value in zip(keys, scores.tolist()):
        out[n].setdefault(lang, []).append(float(value))
    return out
