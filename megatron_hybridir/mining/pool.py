"""Disk-backed text pools: the passages and queries of one language, addressed by position.

Why it exists: a corpus of tens of millions of passages must not live in Python strings while it is
encoded and searched. :class:`TextStoreWriter` appends UTF-8 texts to ``<name>.txt.bin`` and their
offsets to ``<name>.off.npy`` (plus each text's content id and owning item); :class:`TextStore`
reads them back through mmap, one text at a time. A store is valid once its ``.done`` marker
exists, so a crashed spool pass is redone, never half-used.

What it does not do: encode or search.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from megatron_hybridir.data.content_id import content_id


class TextStoreWriter:
    def __init__(self, folder: Path, name: str):
        self.folder, self.name = Path(folder), name
        self.folder.mkdir(parents=True, exist_ok=True)
        self._data = (self.folder / f"{name}.txt.bin").open("wb")
        self._offsets, self._ids, self._items = [0], [], []

    def add(self, text: str, item: int) -> int:
        """Append ``text`` (owned by ``item``, -1 for corpus passages); returns its position."""
        raw = text.encode("utf-8")
        self._data.write(raw)
        self._offsets.append(self._offsets[-1] + len(raw))
        self._ids.append(content_id(text))
        self._items.append(item)
        return len(self._ids) - 1

    @property
    def last_id(self) -> int:
        """Content id of the text added last."""
        return self._ids[-1]

    def close(self) -> None:
        self._data.close()
        base = self.folder / self.name
        np.save(f"{base}.off.npy", np.asarray(self._offsets, dtype=np.int64))
        np.save(f"{base}.cid.npy", np.asarray(self._ids, dtype=np.int64))
        np.save(f"{base}.item.npy", np.asarray(self._items, dtype=np.int64))
        Path(f"{base}.done").touch()


class TextStore:
    def __init__(self, folder: Path, name: str):
        base = Path(folder) / name
        if not Path(f"{base}.done").exists():
            raise FileNotFoundError(f"{base}: text store incomplete (no .done marker)")
        size = Path(f"{base}.txt.bin").stat().st_size
        self._data = np.memmap(f"{base}.txt.bin", dtype=np.uint8, mode="r") if size else \
            np.zeros(0, np.uint8)
        self.offsets = np.load(f"{base}.off.npy", mmap_mode="r")
        self.ids = np.load(f"{base}.cid.npy", mmap_mode="r")
        self.items = np.load(f"{base}.item.npy", mmap_mode="r")

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, position: int) -> str:
        start, stop = int(self.offsets[position]), int(self.offsets[position + 1])
        return bytes(self._data[start:stop]).decode("utf-8")

    @staticmethod
    def exists(folder: Path, name: str) -> bool:
        return (Path(folder) / f"{name}.done").exists()
