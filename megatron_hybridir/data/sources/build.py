"""One call per public source: read it, check leakage, write JSONL records and the report.

Why it exists: ``tools/build_training_data.py`` is a thin CLI; these functions are what it calls
(and what tests call), one per source, with explicit keyword-only settings. Each returns the
:class:`BuildReport` it also wrote to ``<output stem>.report.json``.

Shared settings: ``leak_checks`` — (kind, path, split or None) per evaluation benchmark
(``leakage.py``); ``on_leak`` — ``"drop"`` (default) or ``"fail"``; ``on_error`` — ``"raise"``
(default: a malformed line stops the build naming file, line, field and value) or ``"skip"`` (it is
counted instead); ``max_negatives`` — hard negatives kept per item (``None``: all).

What it does not do: tokenize (``tools/preprocess_data.py`` reads the output).
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Optional, Sequence

from megatron_hybridir.data.readers import DataError, validate_languages
from megatron_hybridir.data.sources import beir, dpr, miracl, mmarco
from megatron_hybridir.data.sources.leakage import LeakFilter
from megatron_hybridir.data.sources.report import BuildReport
from megatron_hybridir.data.sources.writer import check_output, write_records

LeakSpec = tuple[str, str, Optional[str]]


def _start(source: str, output, leak_checks: Sequence[LeakSpec], on_leak: str,
           **settings) -> tuple[BuildReport, LeakFilter]:
    check_output(output)    # before hours of reading, not after
    limit = settings.get("max_negatives")
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise DataError(f"max_negatives: expected a non-negative integer or None, got {limit!r}")
    report = BuildReport(source, settings={k: v for k, v in settings.items()})
    return report, LeakFilter.from_specs(list(leak_checks), on_leak)


def build_mmarco(*, output: str | Path, languages: Sequence[str], root: Optional[str] = None,
                 datasets: Optional[dict] = None, hub: Optional[str] = None,
                 triples: Optional[str] = None, qrels: Optional[str] = None,
                 max_negatives: Optional[int] = 8, leak_checks: Sequence[LeakSpec] = (),
                 on_leak: str = "drop", on_error: str = "raise", quiet: bool = False) -> BuildReport:
    """Parallel records from mMARCO: TSV files under ``root``, or ``datasets`` ({lang: (queries,
    collection)} Dataset objects), or the hub name ``hub``; judgements from ``triples`` and/or
    ``qrels``."""
    languages = validate_languages(languages)
    if sum(x is not None for x in (root, datasets, hub)) != 1:
        raise DataError("mmarco: give exactly one of root (TSV files), datasets or hub")
    report, leak = _start(f"mmarco {root or hub or 'datasets'}", output, leak_checks, on_leak,
                          languages=languages, triples=triples, qrels=qrels,
                          max_negatives=max_negatives)
    if datasets is not None and set(languages) - set(datasets):
        missing = sorted(set(languages) - set(datasets))
        raise DataError(f"mmarco: no datasets for language(s) {missing}; got {sorted(datasets)}")
    tables = (mmarco.file_tables(root, languages) if root is not None else
              mmarco.dataset_tables({k: datasets[k] for k in languages}) if datasets is not None
              else mmarco.hub_tables(languages, hub))
    judgements = mmarco.read_judgements(triples=triples, qrels=qrels, max_negatives=max_negatives,
                                        report=report, on_error=on_error)
    with ExitStack() as stack:
        for pair in tables.values():
            for table in pair:
                stack.enter_context(table)
        records = mmarco.mmarco_records(tables, judgements, report, on_error=on_error)
        return write_records(records, output, report, languages=languages, leak=leak,
                      on_error=on_error, quiet=quiet)


def build_miracl(*, output: str | Path, lang: str, source=None, hub: Optional[str] = None,
                 max_negatives: Optional[int] = 8, leak_checks: Sequence[LeakSpec] = (),
                 on_leak: str = "drop", on_error: str = "raise", quiet: bool = False) -> BuildReport:
    """Monolingual records from MIRACL's training split of ``lang``: a JSONL file / Dataset
    (``source``) or the hub name ``hub`` (``miracl/miracl``)."""
    (lang,) = validate_languages([lang])
    if (source is None) == (hub is None):
        raise DataError("miracl: give exactly one of source (file or Dataset) or hub")
    report, leak = _start(f"miracl {lang} {source if hub is None else hub}", output, leak_checks,
                          on_leak, lang=lang, max_negatives=max_negatives)
    rows = source if hub is None else miracl.hub_dataset(lang, hub)
    records = miracl.miracl_records(rows, lang, report, max_negatives=max_negatives,
                                    on_error=on_error)
    return write_records(records, output, report, languages=[lang], leak=leak, on_error=on_error,
                  quiet=quiet)


def build_dpr(*, output: str | Path, source=None, hub: Optional[str] = None, lang: str = "en",
              max_negatives: Optional[int] = 8, use_negative_ctxs: bool = False,
              leak_checks: Sequence[LeakSpec] = (), on_leak: str = "drop",
              on_error: str = "raise", quiet: bool = False) -> BuildReport:
    """Monolingual records from a DPR training JSON (``source``: file or Dataset) or the hub name
    ``hub`` (split ``train``, DPR's field names)."""
    (lang,) = validate_languages([lang])
    if (source is None) == (hub is None):
        raise DataError("dpr: give exactly one of source (file or Dataset) or hub")
    report, leak = _start(f"dpr {source if hub is None else hub}", output, leak_checks, on_leak,
                          lang=lang, max_negatives=max_negatives,
                          use_negative_ctxs=use_negative_ctxs)
    if hub is not None:
        from datasets import load_dataset

        source = load_dataset(hub, split="train")
    records = dpr.dpr_records(source, report, max_negatives=max_negatives,
                              use_negative_ctxs=use_negative_ctxs, lang=lang, on_error=on_error)
    return write_records(records, output, report, languages=[lang], leak=leak, on_error=on_error,
                  quiet=quiet)


def build_beir(*, output: str | Path, folder: Optional[str] = None, source: Optional[dict] = None,
               hub: Optional[str] = None, lang: str = "en", split: str = "train",
               leak_checks: Sequence[LeakSpec] = (), on_leak: str = "drop",
               on_error: str = "raise", quiet: bool = False) -> BuildReport:
    """Monolingual records from a BEIR folder's ``qrels/<split>.tsv``, a ``beir.dataset_source``
    dict of Datasets, or the hub name ``hub`` (``BeIR/<hub>``)."""
    (lang,) = validate_languages([lang])
    if sum(x is not None for x in (folder, source, hub)) != 1:
        raise DataError("beir: give exactly one of folder, source (Datasets) or hub")
    report, leak = _start(f"beir {folder or hub or source['name']}", output, leak_checks, on_leak,
                          lang=lang, split=split)
    src = (beir.folder_source(folder, split) if folder is not None else source
           if source is not None else beir.hub_source(hub, split))
    records = beir.beir_records(src, report, lang=lang, on_error=on_error)
    return write_records(records, output, report, languages=[lang], leak=leak, on_error=on_error,
                  quiet=quiet)
