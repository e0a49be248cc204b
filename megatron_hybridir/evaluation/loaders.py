"""Benchmark loaders: BEIR folders, NQ in DPR form, MIRACL per language, XQuAD-R / MLQA-R (LAReQA).

Each reads the benchmark's own release layout from a local folder (no network needed); BEIR and
MIRACL can also come through ``datasets`` from the Hugging Face hub (:func:`load_beir_hub`,
:func:`load_miracl_hub`). Malformed input stops with the file, line and what was expected. The
LAReQA loaders live in ``lareqa_loader.py`` and are re-exported here.
What it does not do: encode or score (``encoder.py``, ``metrics.py``).
"""

from __future__ import annotations

import ast
import csv
import json
import math
from pathlib import Path
from typing import Iterator

from megatron_hybridir.data import text_files
from megatron_hybridir.evaluation.fields import Unique, check_unicode
# LAReQA's nested JSON has its own module; its loaders are offered here with the others.
from megatron_hybridir.evaluation.lareqa_loader import (load_lareqa, load_xquad_r_hub,  # noqa: F401
                                                        split_sentences)
from megatron_hybridir.evaluation.tasks import EvalDataError, RetrievalTask

csv.field_size_limit(1 << 30)


def _find(folder: Path, *names: str) -> Path:
    return text_files.find(folder, *names, error=EvalDataError)


def _unique_column(ids, source: str, kind: str) -> None:
    """Hub datasets: the same check over a column, naming the rows."""
    seen = Unique(kind)
    for row, key in enumerate(ids):
        seen.add(key, f"{source} row {row}")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """Numbered text lines; a byte that is not UTF-8 stops with the file and line."""
    return text_files.numbered_lines(path, error=EvalDataError)


def _field(record: dict, key: str, where: str, types: tuple, expected: str):
    value = record[key]
    if not isinstance(value, types) or isinstance(value, bool):
        raise EvalDataError(f"{where}: field {key!r} must be {expected}, got "
                            f"{type(value).__name__} {value!r:.60}")
    if isinstance(value, str):
        check_unicode(value, where, key)
    return value


def _jsonl(path: Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict]]:
    for lineno, line in _lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise EvalDataError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None
        except (ValueError, RecursionError) as err:    # over-long integers, deep nesting
            raise EvalDataError(f"{path}:{lineno}: not valid JSON ({str(err)[:100]})") from None
        if not isinstance(record, dict):
            raise EvalDataError(f"{path}:{lineno}: expected a JSON object, got "
                                f"{type(record).__name__}")
        missing = [key for key in required if key not in record]
        if missing:
            raise EvalDataError(f"{path}:{lineno}: missing field(s) {missing}; expected "
                                f"{list(required)}")
        where = f"{path}:{lineno}"
        # Ids: strings (JSON integers are common and read as their decimal text); texts: strings.
        record[required[0]] = str(_field(record, required[0], where, (str, int),
                                         "a string or an integer"))
        for key in required[1:]:
            _field(record, key, where, (str,), "a string")
        if record.get("title") is not None:
            _field(record, "title", where, (str,), "a string")
        yield lineno, record


def _qrels_tsv(path: Path, trec: bool = False) -> dict[str, dict[str, int]]:
    """BEIR ``query-id corpus-id score`` (with header) or TREC ``qid Q0 docid rel``."""
    qrels: dict[str, dict[str, int]] = {}
    pairs = Unique("judgement for (query, document)")
    for lineno, line in _lines(path):
        parts = line.rstrip("\r\n").split("\t") if "\t" in line else line.split()
        if not parts or not line.strip():
            continue
        if lineno == 1 and not trec and parts[-1] == "score":
            continue
        expected = 4 if trec else 3
        if len(parts) != expected:
            raise EvalDataError(f"{path}:{lineno}: expected {expected} columns "
                                f"({'qid Q0 docid relevance' if trec else 'query-id corpus-id score'}), "
                                f"found {len(parts)}")
        qid, did, score = (parts[0], parts[2], parts[3]) if trec else parts
        try:
            relevance = float(score)
        except ValueError:
            raise EvalDataError(f"{path}:{lineno}: relevance {score!r} is not a number") from None
        if not math.isfinite(relevance) or relevance != int(relevance):
            raise EvalDataError(f"{path}:{lineno}: relevance {score!r} is not an integer grade")
        pairs.add((qid, did), f"{path}:{lineno}")
        qrels.setdefault(qid, {})[did] = int(relevance)
    return qrels


def _csv_rows(reader, path: Path) -> Iterator[list[str]]:
    """Rows of a ``csv.reader``; its errors (a quote left open at the end of the file) name the
    file and line."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            raise EvalDataError(f"{path}:{reader.line_num}: not valid TSV ({err})") from None
        yield row


def load_beir(folder: str | Path, split: str = "test") -> RetrievalTask:
    """A BEIR dataset folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv."""
    folder = Path(folder)
    corpus_path = _find(folder, "corpus.jsonl")
    ids, titles, texts = [], [], []
    seen = Unique("corpus id")
    for lineno, rec in _jsonl(corpus_path, ("_id", "text")):
        seen.add(rec["_id"], f"{corpus_path}:{lineno}")
        ids.append(rec["_id"])
        titles.append(rec.get("title") or "")
        texts.append(rec["text"])
    qids, qtexts = [], []
    queries_path, seen = _find(folder, "queries.jsonl"), Unique("query id")
    for lineno, rec in _jsonl(queries_path, ("_id", "text")):
        seen.add(rec["_id"], f"{queries_path}:{lineno}")
        qids.append(rec["_id"])
        qtexts.append(rec["text"])
    qrels = _qrels_tsv(_find(folder / "qrels", f"{split}.tsv"))
    return RetrievalTask(folder.name, ids, texts, qids, qtexts, qrels,
                         corpus_titles=titles).check(str(folder))


def load_nq(folder: str | Path, qa_file: str = "nq-test.qa.csv") -> RetrievalTask:
    """NQ in DPR form: psgs_w100.tsv (id, text, title) and a qa.csv of ``question<TAB>[answers]``."""
    folder = Path(folder)
    psgs = _find(folder, "psgs_w100.tsv")
    ids, titles, texts = [], [], []
    seen = Unique("passage id")
    reader = csv.reader((line for _, line in _lines(psgs)), delimiter="\t")
    for row in _csv_rows(reader, psgs):
        lineno = reader.line_num
        if lineno == 1 and row[:1] == ["id"]:
            continue
        if len(row) != 3:
            raise EvalDataError(f"{psgs}:{lineno}: expected 3 tab-separated columns "
                                f"(id, text, title), found {len(row)}")
        seen.add(row[0], f"{psgs}:{lineno}")
        ids.append(row[0])
        texts.append(row[1])
        titles.append(row[2])
    qa_path = _find(folder, qa_file)
    qids, qtexts, answers = [], [], {}
    reader = csv.reader((line for _, line in _lines(qa_path)), delimiter="\t")
    for row in _csv_rows(reader, qa_path):
        lineno = reader.line_num
        if len(row) != 2:
            raise EvalDataError(f"{qa_path}:{lineno}: expected 'question<TAB>[answers]', "
                                f"found {len(row)} column(s)")
        try:
            answer_list = ast.literal_eval(row[1])
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            raise EvalDataError(f"{qa_path}:{lineno}: answers {row[1][:60]!r} are not a "
                                f"Python/JSON list of strings") from None
        if (not isinstance(answer_list, list) or not answer_list
                or not all(isinstance(a, str) and a.strip() for a in answer_list)):
            raise EvalDataError(f"{qa_path}:{lineno}: answers must be a non-empty list of "
                                f"non-empty strings, got {row[1][:60]!r}")
        for answer in answer_list:
            check_unicode(answer, f"{qa_path}:{lineno}", "answers")
        qid = str(len(qids))              # DPR numbers the questions in file order
        qids.append(qid)
        qtexts.append(row[0])
        answers[qid] = answer_list
    return RetrievalTask("nq", ids, texts, qids, qtexts, answers=answers,
                         corpus_titles=titles).check(str(qa_path))


def load_miracl(root: str | Path, lang: str, split: str = "dev") -> RetrievalTask:
    """MIRACL as released: miracl-v1.0-<lang>/{topics,qrels}/ and miracl-corpus-v1.0-<lang>/docs-*.jsonl[.gz]."""
    root = Path(root)
    topic_dir = root / f"miracl-v1.0-{lang}"
    topics = _find(topic_dir / "topics", f"topics.miracl-v1.0-{lang}-{split}.tsv")
    qids, qtexts = [], []
    seen = Unique("query id")
    for lineno, line in _lines(topics):
        parts = line.rstrip("\r\n").split("\t")
        if len(parts) != 2 or not parts[0]:
            raise EvalDataError(f"{topics}:{lineno}: expected 'qid<TAB>query' with a non-empty qid")
        seen.add(parts[0], f"{topics}:{lineno}")
        qids.append(parts[0])
        qtexts.append(parts[1])
    qrels = _qrels_tsv(_find(topic_dir / "qrels", f"qrels.miracl-v1.0-{lang}-{split}.tsv"), trec=True)
    corpus_dir = root / f"miracl-corpus-v1.0-{lang}"
    shards = sorted(corpus_dir.glob("docs-*.jsonl*"))
    if not shards:
        raise EvalDataError(f"{corpus_dir}: no docs-*.jsonl[.gz] corpus shards")
    ids, titles, texts = [], [], []
    seen = Unique("docid")
    for shard in shards:
        for lineno, rec in _jsonl(shard, ("docid", "text")):
            seen.add(rec["docid"], f"{shard}:{lineno}")
            ids.append(rec["docid"])
            titles.append(rec.get("title") or "")
            texts.append(rec["text"])
    return RetrievalTask(f"miracl-{lang}", ids, texts, qids, qtexts, qrels, corpus_titles=titles,
                         corpus_langs=[lang] * len(ids), query_langs=[lang] * len(qids)
                         ).check(str(topic_dir))


def load_beir_hub(name: str, split: str = "test") -> RetrievalTask:
    """A BEIR dataset from the hub (``BeIR/<name>`` corpus + queries, ``BeIR/<name>-qrels``)."""
    import datasets

    corpus = datasets.load_dataset(f"BeIR/{name}", "corpus", split="corpus")
    queries = datasets.load_dataset(f"BeIR/{name}", "queries", split="queries")
    qrels_rows = datasets.load_dataset(f"BeIR/{name}-qrels", split=split)
    qrels: dict[str, dict[str, int]] = {}
    pairs = Unique("judgement for (query, document)")
    for index, row in enumerate(qrels_rows):
        key = (str(row["query-id"]), str(row["corpus-id"]))
        pairs.add(key, f"hub BeIR/{name}-qrels {split} row {index}")
        qrels.setdefault(key[0], {})[key[1]] = int(row["score"])
    _unique_column([str(i) for i in corpus["_id"]], f"hub BeIR/{name} corpus", "corpus id")
    _unique_column([str(i) for i in queries["_id"]], f"hub BeIR/{name} queries", "query id")
    return RetrievalTask(name, [str(i) for i in corpus["_id"]], list(corpus["text"]),
                         [str(i) for i in queries["_id"]], list(queries["text"]), qrels,
                         corpus_titles=list(corpus["title"])).check(f"hub BeIR/{name}")


def load_miracl_hub(lang: str, split: str = "dev") -> RetrievalTask:
    """MIRACL from the hub: judgements from ``miracl/miracl``, passages from ``miracl/miracl-corpus``."""
    import datasets

    topics = datasets.load_dataset("miracl/miracl", lang, split=split)
    corpus = datasets.load_dataset("miracl/miracl-corpus", lang, split="train")
    qrels: dict[str, dict[str, int]] = {}
    for row in topics:
        rels = qrels.setdefault(str(row["query_id"]), {})
        rels.update({p["docid"]: 1 for p in row["positive_passages"]})
        rels.update({p["docid"]: 0 for p in row["negative_passages"]})
    qids = [str(q) for q in topics["query_id"]]
    _unique_column(qids, f"hub miracl/miracl {lang} {split}", "query id")
    _unique_column(list(corpus["docid"]), f"hub miracl/miracl-corpus {lang}", "docid")
    return RetrievalTask(f"miracl-{lang}", list(corpus["docid"]), list(corpus["text"]), qids,
                         list(topics["query"]), qrels, corpus_titles=list(corpus["title"]),
                         corpus_langs=[lang] * len(corpus), query_langs=[lang] * len(qids)
                         ).check(f"hub miracl/miracl {lang}")


def load_nq_hub(split: str = "validation") -> RetrievalTask:
    """NQ in DPR form from the hub: passages ``wiki_dpr`` (psgs_w100), questions ``nq_open``
    (its validation split is the 3,610-question NQ test set of DPR)."""
    import datasets

    passages = datasets.load_dataset("wiki_dpr", "psgs_w100.nq.no_index", split="train")
    passages = passages.select_columns(["id", "text", "title"])
    questions = datasets.load_dataset("nq_open", split=split)
    qids = [str(i) for i in range(len(questions))]
    answers = {q: list(a) for q, a in zip(qids, questions["answer"])}
    return RetrievalTask("nq", [str(i) for i in passages["id"]], list(passages["text"]), qids,
                         list(questions["question"]), answers=answers,
                         corpus_titles=list(passages["title"])).check("hub nq_open")
