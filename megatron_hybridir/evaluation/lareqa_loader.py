"""LAReQA benchmarks: XQuAD-R / MLQA-R files as released (one SQuAD-style <lang>.json per language,
with ``sentences`` and ``sentence_breaks``), and XQuAD-R from the hub split into sentences.

Why it exists: these files are nested JSON, not lines; every field the scoring reads is checked
here and a bad one is named by file, paragraph (``data[a].paragraphs[p]``), question (``qas[q]``,
id) and field. The alignment rule across languages is :func:`load_lareqa`'s. What it does not do:
score (``runner.evaluate_lareqa``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Optional

from megatron_hybridir.evaluation.fields import Unique, check_unicode
from megatron_hybridir.evaluation.tasks import EvalDataError, LAReQATask


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
        check_unicode(value, where, field)
    return value


def _lareqa_paragraph(para, where: str, lang: str, a: int, p: int, candidates: list,
                      questions: dict, answer: dict, seen: Unique) -> None:
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
        seen = Unique("question id")
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


# Sentence ends for contexts that come without LAReQA's sentence breaks (Latin, CJK, Devanagari,
# Arabic, Greek question mark, Thai has none: its contexts split on runs of spaces instead).
_SENTENCE_END = re.compile(r"(?<=[.!?。！？।؟;])\s+|(?<=[。！？])")


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
