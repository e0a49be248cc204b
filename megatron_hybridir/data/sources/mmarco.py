"""mMARCO (MS MARCO translated) -> PARALLEL records, joined strictly by id.

Why it exists: mMARCO ships one queries file and one collection per language, all keyed by MS
MARCO's ids, and one language-free list of training judgements. Pairing the language files by line
number misaligns them as soon as one translation lacks a line; here every text is looked up by its
id in its own language's file. An id missing in one language means the item lacks that language
(counted), never that a neighbour's text takes its place.

The layout relied on (Hugging Face ``unicamp-dl/mmarco``, its loading script ``mmarco.py`` and its
file tree, checked for this module):

- ``<root>/collections/<language>_collection.tsv``: ``pid<TAB>passage`` per line, no header;
- ``<root>/queries/train/<language>_queries.train.tsv``: ``qid<TAB>query`` per line, no header;
  ``<root>`` is ``data/v2`` (14 languages), ``data/v1`` (9) or ``data/google``;
- ``data/triples.train.ids.small.tsv``: ``qid<TAB>positive pid<TAB>negative pid`` per line, the
  same for every language (ids are shared across translations);
- MS MARCO's ``qrels.train.tsv``: TREC ``qid 0 pid 1`` (tab or space separated).

``<language>`` is the English name of the language (``german``); :data:`MMARCO_LANGUAGES` maps
ISO codes to it. Through ``datasets`` the same tables come as ``id`` / ``text`` columns (configs
``collection-<language>`` and ``queries-<language>``), and are read by row.

One item per query (first seen in the judgements): its first positive passage, and up to
``max_negatives`` distinct negatives from the triples in file order, without the query's positives.
Memory: the judgements hold, per judged query, its positives and at most ``max_negatives``
negative ids (``max_negatives=None`` keeps all: memory then grows with the triples); each language
table then costs one int64 per referenced id (``tables.index_ids``). The collections themselves
are never loaded.

What it does not do: download (``datasets`` names go through :func:`hub_tables`) or mine
negatives (``megatron_hybridir/mining``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

from megatron_hybridir.data.readers import DataError
from megatron_hybridir.data.sources.report import BuildReport
from megatron_hybridir.data.sources.tables import (
    DatasetTable, TsvTable, scan_lines, decode, index_ids, show,
)

MMARCO_LANGUAGES = {
    "ar": "arabic", "de": "german", "en": "english", "es": "spanish", "fr": "french",
    "hi": "hindi", "id": "indonesian", "it": "italian", "ja": "japanese", "nl": "dutch",
    "pt": "portuguese", "ru": "russian", "vi": "vietnamese", "zh": "chinese",
}


def _language_name(lang: str) -> str:
    if lang not in MMARCO_LANGUAGES:
        raise DataError(f"mmarco: no translation for language {lang!r}; mMARCO has "
                        f"{sorted(MMARCO_LANGUAGES)}")
    return MMARCO_LANGUAGES[lang]


def file_tables(root: str | Path, languages: list[str], split: str = "train") -> dict:
    """{lang: (queries table, collection table)} over mMARCO's TSV files under ``root``."""
    root = Path(root)
    out = {}
    for lang in languages:
        name = _language_name(lang)
        out[lang] = (TsvTable(root / "queries" / split / f"{name}_queries.{split}.tsv",
                              f"{lang} query"),
                     TsvTable(root / "collections" / f"{name}_collection.tsv", f"{lang} passage"))
    return out


def dataset_tables(datasets: dict) -> dict:
    """{lang: (queries Dataset, collection Dataset)} with ``id`` / ``text`` columns -> tables.
    Map-style (memory-mapped) Datasets: texts are read back by row, which streaming
    ``IterableDataset`` objects cannot do."""
    for lang, pair in datasets.items():
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise DataError(f"mmarco datasets[{lang!r}]: expected (queries, collection), got "
                            f"{type(pair).__name__}")
    return {lang: (DatasetTable(q, f"{lang} query", name=f"mmarco queries {lang}"),
                   DatasetTable(c, f"{lang} passage", name=f"mmarco collection {lang}"))
            for lang, (q, c) in datasets.items()}


def hub_tables(languages: list[str], name: str = "unicamp-dl/mmarco") -> dict:
    """The tables from the hub (downloads; never called by the tests)."""
    from datasets import load_dataset

    return dataset_tables({lang: (
        load_dataset(name, f"queries-{_language_name(lang)}", split="train"),
        load_dataset(name, f"collection-{_language_name(lang)}", split="collection"))
        for lang in languages})


@dataclass
class Judgements:
    """Per judged query (in first-seen order): positive and negative passage ids."""
    positives: dict = field(default_factory=dict)
    negatives: dict = field(default_factory=dict)

    def query(self, qid: str) -> None:
        self.positives.setdefault(qid, [])
        self.negatives.setdefault(qid, [])


def _columns(raw: bytes, where: str, expected: int, what: str, *, whitespace: bool) -> list[str]:
    line = decode(raw, where).rstrip("\r\n")
    parts = line.split() if whitespace and "\t" not in line else line.split("\t")
    if len(parts) != expected or not all(p.strip() for p in parts):
        raise DataError(f"{where}: expected {expected} columns ({what}), found {len(parts)} in "
                        f"{show(line)}", reason=f"malformed line ({what})")
    return parts


def read_judgements(*, triples: Optional[str | Path] = None, qrels: Optional[str | Path] = None,
                    max_negatives: Optional[int], report: BuildReport,
                    on_error: str = "raise") -> Judgements:
    """Positives from ``qrels`` (relevance > 0) and/or the triples, negatives from the triples."""
    if triples is None and qrels is None:
        raise DataError("mmarco: give the training triples (qid pos neg) and/or the qrels")
    out = Judgements()
    for path, kind in ((qrels, "qrels"), (triples, "triples")):
        if path is None:
            continue
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: file not found ({kind})")
        for lineno, _, raw in scan_lines(path, path.name):
            if not raw.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                if kind == "qrels":
                    qid, _, pid, grade = _columns(raw, where, 4, "qid 0 pid relevance",
                                                  whitespace=True)
                    if not grade.lstrip("-").isdigit():
                        raise DataError(f"{where}: field 'relevance' must be an integer, got "
                                        f"{grade!r}", reason="malformed line (qrels)")
                    pairs = [(qid, pid, None)] if int(grade) > 0 else []
                    if not pairs:
                        report.skip("qrels line with relevance <= 0", where)
                else:
                    pairs = [tuple(_columns(raw, where, 3, "qid<TAB>positive pid<TAB>negative pid",
                                            whitespace=False))]
            except DataError as err:
                if on_error == "raise":
                    raise
                report.skip(err.reason, where)
                continue
            for qid, pos, neg in pairs:
                _add(out, qid, pos, neg, max_negatives, report, where)
    return out


def _add(out: Judgements, qid: str, pos: str, neg: Optional[str], max_negatives: Optional[int],
         report: BuildReport, where: str) -> None:
    out.query(qid)
    positives, negatives = out.positives[qid], out.negatives[qid]
    if pos not in positives:
        positives.append(pos)
    if neg is None:
        return
    if neg in positives:
        report.trim("negative id is a positive of the same query", where)
    elif neg in negatives:
        report.skip("repeated (query, negative) pair", where)
    elif max_negatives is not None and len(negatives) >= max_negatives:
        report.trim(f"negative beyond max_negatives={max_negatives}", where)
    else:
        negatives.append(neg)


def _texts(tables: dict, which: int, handles: dict, slot: int, report: BuildReport,
           what: str) -> dict[str, str]:
    out = {}
    for lang, table_pair in tables.items():
        handle = handles[lang][slot]
        if handle < 0:
            continue
        text, where = table_pair[which].text_at(int(handle))
        if text.strip():
            out[lang] = text
        else:
            report.skip(f"empty {lang} {what} text (treated as missing)", where)
    return out


def mmarco_records(tables: dict, judgements: Judgements, report: BuildReport, *,
                   on_error: str = "raise") -> Iterator[tuple[str, dict]]:
    """Parallel records ``{"id", "query": {lang: ..}, "positive": {..}, "negatives": [{..}]}``."""
    qslots = {qid: n for n, qid in enumerate(judgements.positives)}
    pslots: dict[str, int] = {}
    for qid, positives in judgements.positives.items():
        for pid in positives[:1] + judgements.negatives[qid]:
            pslots.setdefault(pid, len(pslots))
    qhandles = {lang: index_ids(queries, qslots, report, on_error=on_error)
                for lang, (queries, _) in tables.items()}
    phandles = {lang: index_ids(collection, pslots, report, on_error=on_error)
                for lang, (_, collection) in tables.items()}
    for qid, positives in judgements.positives.items():
        report.candidates += 1
        where = f"mmarco query id {qid}"
        if not positives:
            report.drop("query with negatives but no positive", where)
            continue
        if len(positives) > 1:
            report.trim("extra positives (one item per query: the first)", where, len(positives) - 1)
        query = _texts(tables, 0, qhandles, qslots[qid], report, "query")
        positive = _texts(tables, 1, phandles, pslots[positives[0]], report, "passage")
        both = sorted(set(query) & set(positive))
        if not query or not positive or not both:
            report.drop("query id in no queries file" if not query else
                        "positive passage id in no collection" if not positive else
                        "no language with both the query and the positive", where)
            continue
        for lang in tables:
            if lang not in both:
                report.trim(f"item lacks {lang} (query or positive missing)", where)
        negatives = []
        for pid in judgements.negatives[qid]:
            if pid in positives:    # judged positive on a later line than the triple
                report.trim("negative id is a positive of the same query", where)
                continue
            texts = _texts(tables, 1, phandles, pslots[pid], report, "passage")
            if texts:
                negatives.append(texts)
            else:
                report.trim("negative passage id in no collection", where)
        yield where, {"id": f"mmarco-{qid}", "query": query, "positive": positive,
                      "negatives": negatives}
