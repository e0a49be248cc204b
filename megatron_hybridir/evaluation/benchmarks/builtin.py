"""The built-in benchmarks: BEIR, NQ and MIRACL (retrieval), XQuAD-R, MLQA-R and any folder in
LAReQA form (lareqa), each one :class:`~megatron_hybridir.evaluation.benchmarks.base.Benchmark`
over the loaders in ``loaders.py`` (docs/design.md §9.1).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from megatron_hybridir.evaluation import loaders
from megatron_hybridir.evaluation.benchmarks.base import Benchmark, register_benchmark, score_answers
from megatron_hybridir.evaluation.tasks import EvalDataError

if TYPE_CHECKING:
    from megatron_hybridir.evaluation.config import EvalConfig

XQUAD_R_LANGUAGES = ["ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh"]
_NO_LAREQA_HUB = ("has no hub copy with sentence breaks; download the LAReQA files "
                  "(github.com/google-research-datasets/lareqa) and set data=")


def _miracl_languages(config: "EvalConfig") -> list[str]:
    if config.hub and not config.languages:
        raise EvalDataError("languages: name the MIRACL languages to read from the hub")
    langs = config.languages or sorted(
        p.name.removeprefix("miracl-v1.0-") for p in Path(config.data).glob("miracl-v1.0-*"))
    if not langs:
        raise EvalDataError(f"{config.data}: no miracl-v1.0-<lang> folders")
    return langs


register_benchmark(Benchmark(
    "beir", "retrieval", hub_data=True, about="a BEIR dataset folder (hub: its name)",
    load=lambda s: loaders.load_beir(s.data, s.split),
    load_hub=lambda s: loaders.load_beir_hub(s.data, s.split)))
register_benchmark(Benchmark(
    "nq", "retrieval", score=score_answers, about="NQ in DPR form, top-k accuracy",
    load=lambda s: loaders.load_nq(s.data),
    load_hub=lambda s: loaders.load_nq_hub()))
register_benchmark(Benchmark(
    "miracl", "retrieval", languages=_miracl_languages, default_split="dev",
    about="MIRACL, one run per language, mean reported",
    load=lambda s: loaders.load_miracl(s.data, s.language, s.split),
    load_hub=lambda s: loaders.load_miracl_hub(s.language, s.split)))
register_benchmark(Benchmark(
    "xquad-r", "lareqa", about="XQuAD-R (LAReQA files; hub: split by punctuation)",
    load=lambda s: loaders.load_lareqa(s.data, s.languages, name="xquad-r"),
    load_hub=lambda s: loaders.load_xquad_r_hub(s.languages or XQUAD_R_LANGUAGES)))
register_benchmark(Benchmark(
    "mlqa-r", "lareqa", no_hub=_NO_LAREQA_HUB,
    about="MLQA-R (LAReQA files; partially parallel: settings without shared questions are n/a)",
    load=lambda s: loaders.load_lareqa(s.data, s.languages, name="mlqa-r", parallel=False)))
register_benchmark(Benchmark(
    "lareqa", "lareqa", no_hub=_NO_LAREQA_HUB,
    about="any folder in LAReQA form (parallel: the same question ids in every language)",
    load=lambda s: loaders.load_lareqa(s.data, s.languages, name="lareqa")))
