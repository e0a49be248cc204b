"""The corpus-embedding cache keys a model by every byte of its folder (issue 16 item 6)."""

from __future__ import annotations

import os
import shutil
import time

import numpy as np

from megatron_hybridir.evaluation import encoder as encoder_mod
from megatron_hybridir.evaluation.encoder import (
    Encoder,
    EncoderConfig,
    encode_corpus,
    folder_fingerprint,
)
from tests.unit.evaluation import formats


def _with_big_file(src, dst, middle_byte: int):
    """A copy of the model with a 5 MiB file whose only difference is one byte in the middle."""
    shutil.copytree(src, dst)
    data = bytearray(5 << 20)
    data[len(data) // 2] = middle_byte
    (dst / "extra_weights.bin").write_bytes(bytes(data))
    return dst


def test_a_change_in_the_middle_of_a_weight_file_changes_the_key(tmp_path, tiny_st_model):
    a = _with_big_file(tiny_st_model, tmp_path / "a", 0)
    b = _with_big_file(tiny_st_model, tmp_path / "b", 1)
    fa = Encoder(EncoderConfig(model=str(a))).fingerprint()
    fb = Encoder(EncoderConfig(model=str(b))).fingerprint()
    assert fa != fb
    shutil.copytree(a, tmp_path / "a2")     # same bytes elsewhere: same key (content decides)
    assert Encoder(EncoderConfig(model=str(tmp_path / "a2"))).fingerprint() == fa


def test_changed_middle_layer_is_not_served_cached_embeddings(tmp_path, tiny_st_model):
    """Encode a corpus with model A, change one middle matrix of A in place (same file size): the
    cache must not hand back A's embeddings; what comes back equals a plain encode by the new model."""
    import torch
    from safetensors.torch import load_file, save_file

    texts = [f"the {w} near the {v}" for w, v in zip(formats.WORDS, formats.WORDS[3:])]
    model = tmp_path / "model"
    shutil.copytree(tiny_st_model, model)
    cache = tmp_path / "cache"
    first = encode_corpus(Encoder(EncoderConfig(model=str(model))), texts.__getitem__, len(texts),
                          cache, progress=False)
    weights = model / "model.safetensors"
    tensors = load_file(weights)
    name = "encoder.layer.0.intermediate.dense.weight"
    tensors[name] = torch.randn(tensors[name].shape, generator=torch.Generator().manual_seed(1))
    size = weights.stat().st_size
    save_file(tensors, str(weights), metadata={"format": "pt"})
    assert weights.stat().st_size == size
    changed = Encoder(EncoderConfig(model=str(model)))
    second = encode_corpus(changed, texts.__getitem__, len(texts), cache, progress=False)
    assert second.folder != first.folder
    emb, positions = next(second.shards())
    old_emb, old_positions = next(first.shards())
    plain = changed.model.encode([texts[i] for i in positions], prompt="passage: ")
    np.testing.assert_allclose(emb, plain, atol=1e-6)
    assert np.abs(np.asarray(old_emb) - plain).max() > 1e-2     # what the old key would have served


def test_content_hashes_are_remembered_until_the_file_changes(tmp_path, monkeypatch):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "w.bin").write_bytes(b"x" * 1000)
    (folder / "config.json").write_text("{}")
    old = time.time() - 60
    for p in folder.iterdir():
        os.utime(p, (old, old))
    time.sleep(0.05)
    hashed = []
    real = encoder_mod._file_sha256
    monkeypatch.setattr(encoder_mod, "_file_sha256", lambda p: hashed.append(p.name) or real(p))
    monkeypatch.setattr(encoder_mod, "_RACY_NS", 0)
    sidecar = tmp_path / "cache" / "file_hashes.json"
    first = folder_fingerprint(folder, hash_cache=sidecar)
    assert sorted(hashed) == ["config.json", "w.bin"]
    hashed.clear()
    assert folder_fingerprint(folder, hash_cache=sidecar) == first and hashed == []
    # Same size, mtime set back: ctime still moves, so the file is hashed again.
    time.sleep(0.05)
    (folder / "w.bin").write_bytes(b"y" * 1000)
    os.utime(folder / "w.bin", (old, old))
    changed = folder_fingerprint(folder, hash_cache=sidecar)
    assert hashed == ["w.bin"] and changed != first
    sidecar.write_text("{not json")                  # a damaged sidecar only costs re-hashing
    assert folder_fingerprint(folder, hash_cache=sidecar) == changed


def test_recently_written_files_are_not_remembered(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "w.bin").write_bytes(b"x")
    sidecar = tmp_path / "h.json"
    folder_fingerprint(folder, hash_cache=sidecar)
    assert not sidecar.exists()       # written just now: its stat may not change on a rewrite
