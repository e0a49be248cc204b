"""A deterministic stand-in encoder (character trigram hashing) and a planted-copies fixture.

The stand-in scores copies of a text (exact or after normalisation) as its nearest neighbours, so
every planted copy is among the first search candidates and only the miner's filters keep it out.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from megatron_hybridir.data.content_id import normalize_text

LANGS = ["en", "de"]


class TrigramEncoder:
    dim = 128
    passage_prompt = ""

    def __init__(self):
        self.calls = {"queries": 0, "passages": 0}

    def fingerprint(self, hash_cache=None) -> str:
        return "trigram-v1"

    def _embed(self, texts):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            t = f"  {normalize_text(text)}  "
            for i in range(len(t) - 2):
                h = int.from_bytes(hashlib.md5(t[i:i + 3].encode()).digest()[:4], "little")
                out[row, h % self.dim] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)

    def token_lengths(self, texts):
        return np.array([len(t) for t in texts])

    def encode_passages_in_order(self, texts, on_batch=None, positions=None):
        self.calls["passages"] += len(texts)
        if on_batch:
            on_batch(len(texts))
        return self._embed(texts)

    def encode_queries(self, texts, progress=False):
        self.calls["queries"] += len(texts)
        return self._embed(texts)


TOPICS = ["river", "mountain", "castle", "forest", "harbour", "bridge", "tower", "valley",
          "island", "desert", "garden", "market"]


def planted_records() -> list[dict]:
    """Parallel en/de items about places; items 1-3 plant copies of item 0's positives."""
    records = []
    for i, topic in enumerate(TOPICS):
        records.append({"id": f"it{i}",
                        "query": {"en": f"where is the old {topic} of town {i}",
                                  "de": f"wo ist der alte {topic} der stadt {i}"},
                        "positive": {"en": f"the old {topic} of town {i} lies north of the square",
                                     "de": f"der alte {topic} der stadt {i} liegt nördlich vom platz"}})
    base = records[0]["positive"]
    records[1]["positive"]["en"] = base["en"]                                   # exact copy
    records[2]["positive"]["en"] = "  The OLD river of TOWN 0\tlies north of the square "  # normalised copy
    records[3]["positive"]["de"] = base["en"]                # untranslated: item 0's en text in de
    records[4]["positive"]["de"] = base["de"].upper()        # copy of item 0's de positive
    records.append({"id": "mono0", "lang": "en", "query": "where is the old river of town 0",
                    "positive": "the old river in town zero"})
    return records


@pytest.fixture
def planted(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in planted_records()) + "\n")
    return path
