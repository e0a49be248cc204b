"""Benchmark loaders: BEIR folders, NQ in DPR form, MIRACL per language, XQuAD-R / MLQA-R (LAReQA).

Each reads the benchmark's own release layout from a local folder (no network needed); BEIR and
MIRACL can also come through ``datasets`` from the Hugging Face hub (:func:`load_beir_hub`,
:func:`load_miracl_hub`). Malformed input stops with the file, line and what was expected.
What it does not do: encode or score (``encoder.py``, ``metrics.py``).
"""

from __future__ import annotations

import ast
import csv
import gzip
import json
import math
import zlib
from pathlib import Path
from typing import Iterator, Optional

from megatron_hybridir.evaluation.tasks import EvalDataError, LAReQATask, RetrievalTask

csv.field_size_limit(1 << 30)


def _find(folder: Path, *names: str) -> Path:
    for name in names:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.exists():
                return candidate
    raise EvalDataError(f"{folder}: missing {' or '.join(names)} (looked for plain and .gz)")


class _Unique:
    """Ids seen so far and where; a repeated id stops with both places (a dict would silently keep
    the last one, replacing one query or document by another)."""

    def __init__(self, kind: str):
        self.kind, self.first = kind, {}

    def add(self, key, where: str) -> None:
        if key in self.first:
            raise EvalDataError(f"{where}: duplicate {self.kind} {key!r} (first at "
                                f"{self.first[key]})")
        self.first[key] = where


def _unique_column(ids, source: str, kind: str) -> None:
    """Hub datasets: the same check over a column, naming the rows."""
    seen = _Unique(kind)
    for row, key in enumerate(ids):
        seen.add(key, f"{source} row {row}")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """Numbered text lines; a byte that is not UTF-8 stops with the file and line."""
    opener = gzip.open if path.suffix == ".gz" else open
    lineno = 0
    try:
        with opener(path, "rb") as handle:
            for lineno, raw in enumerate(handle, 1):
                try:
                    yield lineno, raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise EvalDataError(f"{path}:{lineno}: not valid UTF-8 (byte "
                                        f"{raw[err.start]:#04x} at column {err.start + 1})") from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise EvalDataError(f"{path}:{lineno + 1}: not a valid gzip stream ({err})") from None


def _field(record: dict, key: str, where: str, types: tuple, expected: str):
    value = record[key]
    if not isinstance(value, types) or isinstance(value, bool):
        raise EvalDataError(f"{where}: field {key!r} must be {expected}, got "
                            f"{type(value).__name__} {value!r:.60}")
    if isinstance(value, str):
        _unicode(value, where, key)
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
    pairs = _Unique("judgement for (query, document)")
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
    seen = _Unique("corpus id")
    for lineno, rec in _jsonl(corpus_path, ("_id", "text")):
        seen.add(rec["_id"], f"{corpus_path}:{lineno}")
        ids.append(rec["_id"])
        titles.append(rec.get("title") or "")
        texts.append(rec["text"])
    qids, qtexts = [], []
    queries_path, seen = _find(folder, "queries.jsonl"), _Unique("query id")
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
    seen = _Unique("passage id")
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
            _unicode(answer, f"{qa_path}:{lineno}", "answers")
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
    seen = _Unique("query id")
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
    seen = _Unique("docid")
    for shard in shards:
        for lineno, rec in _jsonl(shard, ("docid", "text")):
            seen.add(rec["docid"], f"{shard}:{lineno}")
            ids.append(rec["docid"])
            titles.append(rec.get("title") or "")
            texts.append(rec["text"])
    return RetrievalTask(f"miracl-{lang}", ids, texts, qids, qtexts, qrels, corpus_titles=titles,
                         corpus_langs=[lang] * len(ids), query_langs=[lang] * len(qids)
                         ).check(str(topic_dir))


def _answer_sentence(breaks: list, start: int, where: str) -> int:
    for index, (begin, end) in enumerate(breaks):
        if begin <= start < end:
            return index
    raise EvalDataError(f"{where}: answer_start {start} lies in no sentence of sentence_breaks")


def _typed(value, types: tuple, where: str, field: str, expected: str):
    """``value`` if it has one of ``types`` (a bool is no integer); else the place and the field."""
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        raise EvalDataError(f"{where}: field {field!r} must be {expected}, got "
                            f"{type(value).__name__} {value!r:.60}")
    if isinstance(value, str):
        _unicode(value, where, field)
    return value


def _unicode(text: str, where: str, field: str) -> None:
    """JSON escapes can encode lone surrogates, which no tokenizer or UTF-8 writer accepts."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise EvalDataError(f"{where}: field {field!r} holds a lone surrogate "
                            f"({text[err.start]!r} at character {err.start}), not Unicode text") from None


def _lareqa_paragraph(para, where: str, lang: str, a: int, p: int, candidates: list,
                      questions: dict, answer: dict, seen: "_Unique") -> None:
    """Add one paragraph's sentences to ``candidates`` and its questions to ``questions`` /
    ``answer``, checking every field the scoring reads."""
    _typed(para, (dict,), where, "paragraph", "an object")
    for key in ("context", "sentences", "sentence_breaks"):
        if key not in para:
            hint = "" if key == "context" else (" (the LAReQA files add 'sentences' / "
                                                "'sentence_breaks' to XQuAD and MLQA)")
            raise EvalDataError(f"{where}: missing field {key!r}{hint}")
    context = _typed(para["context"], (str,), where, "context", "a string")
    sentences = _typed(para["sentences"], (list,), where, "sentences", "a list of strings")
    breaks = _typed(para["sentence_breaks"], (list,), where, "sentence_breaks",
                    "a list of [begin, end] pairs")
    if len(sentences) != len(breaks):
        raise EvalDataError(f"{where}: {len(sentences)} 'sentences' but {len(breaks)} "
                            f"'sentence_breaks'; expected one break per sentence")
    for s, (sentence, pair) in enumerate(zip(sentences, breaks)):
        _typed(sentence, (str,), where, f"sentences[{s}]", "a string")
        if (not isinstance(pair, list) or len(pair) != 2
                or not all(isinstance(x, int) and not isinstance(x, bool) for x in pair)
                or not 0 <= pair[0] <= pair[1]):
            raise EvalDataError(f"{where}: field 'sentence_breaks[{s}]' must be [begin, end] with "
                                f"integers 0 <= begin <= end, got {pair!r:.60}")
    base = len(candidates)
    candidates += [(f"{lang}:{a}:{p}:{s}", sentence, context) for s, sentence in enumerate(sentences)]
    for q, qa in enumerate(_typed(para.get("qas", []), (list,), where, "qas", "a list")):
        at = f"{where}.qas[{q}]"
        _typed(qa, (dict,), at, "question", "an object")
        for key in ("id", "question", "answers"):
            if key not in qa:
                raise EvalDataError(f"{at}: missing field {key!r}")
        qid = str(_typed(qa["id"], (str, int), at, "id", "a string or an integer"))
        at = f"{at} (id {qid!r})"
        text = _typed(qa["question"], (str,), at, "question", "a string")
        if not text.strip():
            raise EvalDataError(f"{at}: question {qid!r} is empty")
        answers = _typed(qa["answers"], (list,), at, "answers", "a list of answers")
        if not answers:
            raise EvalDataError(f"{at}: question {qid!r} has no answers")
        first = _typed(answers[0], (dict,), at, "answers[0]", "an object")
        if "answer_start" not in first:
            raise EvalDataError(f"{at}: missing field 'answers[0].answer_start'")
        start = _typed(first["answer_start"], (int,), at, "answers[0].answer_start",
                       "an integer")
        seen.add(qid, f"{where} question {qid!r}")
        questions[qid] = text
        answer[qid] = candidates[base + _answer_sentence(breaks, start, at)][0]


def _read_lareqa_file(path: Path) -> list:
    """The ``data`` list of a SQuAD-style JSON file."""
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise EvalDataError(f"{path}: not valid UTF-8 (byte offset {err.start})") from None
    except (ValueError, RecursionError) as err:      # JSONDecodeError, over-long integers, nesting
        raise EvalDataError(f"{path}: not valid JSON ({str(err)[:120]})") from None
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise EvalDataError(f"{path}: expected a SQuAD-style JSON object with a 'data' list")
    return data["data"]


def _check_aligned(source: str, questions: dict[str, dict[str, str]]) -> None:
    """Every language has the same question ids (a parallel benchmark): else stop, naming per
    language how many ids it lacks and a few of them."""
    union = set().union(*(set(q) for q in questions.values()))
    lacking = {lang: sorted(union - set(q)) for lang, q in questions.items()}
    lacking = {lang: ids for lang, ids in lacking.items() if ids}
    if lacking:
        detail = "; ".join(f"{lang} lacks {len(ids)} of {len(union)} (e.g. {ids[:3]})"
                           for lang, ids in lacking.items())
        raise EvalDataError(f"{source}: question ids do not align across languages "
                            f"{sorted(questions)}: {detail}. This benchmark is parallel (every "
                            f"question in every language); use benchmark=mlqa-r for partially "
                            f"parallel files")


def load_lareqa(folder: str | Path, languages: Optional[list[str]] = None,
                name: Optional[str] = None, *, parallel: bool = True) -> LAReQATask:
    """XQuAD-R / MLQA-R as released by LAReQA: one SQuAD-style <lang>.json per language with
    ``sentences`` and ``sentence_breaks`` per paragraph; question ids are shared across languages.

    Alignment rule: with ``parallel`` (XQuAD-R, the generic ``lareqa`` form, the demo) every
    evaluated language must hold exactly the same question ids, else the run stops naming, per
    language, the ids it lacks. Without (MLQA-R, whose questions exist in 2-4 of its 7 languages)
    each X->Y setting is scored over the questions X and Y share, and a setting that shares none is
    n/a (``runner.evaluate_lareqa``). A malformed field stops with the file, the paragraph
    (``data[a].paragraphs[p]``), the question (``qas[q]``, id) and the field.
    """
    folder = Path(folder)
    files = {p.stem: p for p in sorted(folder.glob("*.json"))}
    if not files:
        raise EvalDataError(f"{folder}: no <lang>.json files (LAReQA layout, e.g. xquad-r/en.json)")
    languages = languages or sorted(files)
    if len(set(languages)) != len(languages):
        raise EvalDataError(f"languages: a language is named twice in {languages}")
    missing = [lang for lang in languages if lang not in files]
    if missing:
        raise EvalDataError(f"{folder}: no file for language(s) {missing}; found {sorted(files)}")
    questions, candidates, answer = {}, {}, {}
    for lang in languages:
        path = files[lang]
        questions[lang], candidates[lang], answer[lang] = {}, [], {}
        seen = _Unique("question id")
        for a, article in enumerate(_read_lareqa_file(path)):
            _typed(article, (dict,), f"{path} data[{a}]", "article", "an object")
            paragraphs = _typed(article.get("paragraphs", []), (list,), f"{path} data[{a}]",
                                "paragraphs", "a list")
            for p, para in enumerate(paragraphs):
                _lareqa_paragraph(para, f"{path} data[{a}].paragraphs[{p}]", lang, a, p,
                                  candidates[lang], questions[lang], answer[lang], seen)
    if parallel and len(languages) > 1:
        _check_aligned(str(folder), questions)
    return LAReQATask(name or folder.name, list(languages), questions, candidates, answer)


def load_beir_hub(name: str, split: str = "test") -> RetrievalTask:
    """A BEIR dataset from the hub (``BeIR/<name>`` corpus + queries, ``BeIR/<name>-qrels``)."""
    import datasets

    corpus = datasets.load_dataset(f"BeIR/{name}", "corpus", split="corpus")
    queries = datasets.load_dataset(f"BeIR/{name}", "queries", split="queries")
    qrels_rows = datasets.load_dataset(f"BeIR/{name}-qrels", split=split)
    qrels: dict[str, dict[str, int]] = {}
    pairs = _Unique("judgement for (query, document)")
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


# Sentence ends for contexts that come without LAReQA's sentence breaks (Latin, CJK, Devanagari,
# Arabic, Greek question mark, Thai has none: its contexts split on runs of spaces instead).
_SENTENCE_END = __import__("re").compile(r"(?<=[.!?。！？।؟;])\s+|(?<=[。！？])")


def split_sentences(context: str) -> list[list[int]]:
    """[start, end) character spans of the sentences of ``context``."""
    spans, start = [], 0
    for match in _SENTENCE_END.finditer(context):
        if match.start() > start:
            spans.append([start, match.start()])
        start = match.end()
    if start < len(context):
        spans.append([start, len(context)])
    return spans


def load_xquad_r_hub(languages: list[str]) -> LAReQATask:
    """XQuAD-R from the hub (``xquad_r``). The hub copy has no sentence breaks, so sentences are
    split by punctuation (:func:`split_sentences`): close to, not identical with, LAReQA's release —
    use the GitHub files with :func:`load_lareqa` for numbers comparable with papers."""
    import datasets

    questions, candidates, answer = {}, {}, {}
    for lang in languages:
        rows = datasets.load_dataset("xquad_r", lang, split="validation")
        questions[lang], candidates[lang], answer[lang] = {}, [], {}
        seen: dict[str, int] = {}
        for row in rows:
            context = row["context"]
            if context not in seen:
                seen[context] = len(candidates[lang])
                for s, (begin, end) in enumerate(split_sentences(context)):
                    candidates[lang].append((f"{lang}:{len(seen) - 1}:{s}", context[begin:end], context))
            spans = split_sentences(context)
            index = _answer_sentence(spans, row["answers"]["answer_start"][0], f"hub xquad_r {lang} {row['id']}")
            questions[lang][row["id"]] = row["question"]
            answer[lang][row["id"]] = candidates[lang][seen[context] + index][0]
    if len(languages) > 1:
        _check_aligned("hub xquad_r", questions)
    return LAReQATask("xquad-r", list(languages), questions, candidates, answer)
