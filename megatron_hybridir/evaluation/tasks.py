"""What an evaluation task is, independent of where it was read from.

Two shapes cover the five benchmarks: a :class:`RetrievalTask` (a corpus, queries, graded qrels —
BEIR, MIRACL, and NQ with answer strings instead of qrels) and a :class:`LAReQATask` (parallel
questions and answer sentences in several languages, XQuAD-R and MLQA-R), whose settings —
X->X, X->Y and the multilingual pool — are derived from it by :func:`lareqa_settings`.
Loaders build these and check them (:meth:`RetrievalTask.check`), so a bad qrels line is reported
with the file and line before any encoding starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


class EvalDataError(ValueError):
    """An evaluation input is malformed; the message names the file, line and what was expected."""


@dataclass
class RetrievalTask:
    name: str
    corpus_ids: list[str]
    corpus_texts: list[str]
    query_ids: list[str]
    query_texts: list[str]
    qrels: dict[str, dict[str, int]] = field(default_factory=dict)
    answers: Optional[dict[str, list[str]]] = None     # NQ: answer strings per query
    corpus_titles: Optional[list[str]] = None
    corpus_langs: Optional[list[str]] = None
    query_langs: Optional[list[str]] = None

    def passage(self, index: int) -> str:
        """The text a model encodes: title and body joined by a space, as BEIR and DPR do."""
        title = self.corpus_titles[index] if self.corpus_titles else ""
        return f"{title} {self.corpus_texts[index]}".strip()

    def check(self, source: str) -> "RetrievalTask":
        """Reject an empty corpus or query set, empty queries and qrels that name unknown ids (BEIR
        keeps such lines silently)."""
        if not self.corpus_ids:
            raise EvalDataError(f"{source}: the corpus is empty")
        if not self.query_ids:
            raise EvalDataError(f"{source}: there are no queries")
        for qid, text in zip(self.query_ids, self.query_texts):
            if not text.strip():
                raise EvalDataError(f"{source}: query {qid!r} is empty")
        if self.answers is None:
            known_q, known_d = set(self.query_ids), set(self.corpus_ids)
            for qid, rels in self.qrels.items():
                if qid not in known_q:
                    raise EvalDataError(f"{source}: qrels name query {qid!r}, which is not among the "
                                        f"{len(known_q)} queries")
                for did in rels:
                    if did not in known_d:
                        raise EvalDataError(f"{source}: qrels for query {qid!r} name document "
                                            f"{did!r}, which is not in the corpus")
            # Queries without judgements cannot be scored; keep only judged ones, as BEIR does.
            keep = [i for i, q in enumerate(self.query_ids) if q in self.qrels]
            if not keep:
                raise EvalDataError(f"{source}: no query has relevance judgements")
            self.query_ids = [self.query_ids[i] for i in keep]
            self.query_texts = [self.query_texts[i] for i in keep]
            if self.query_langs is not None:
                self.query_langs = [self.query_langs[i] for i in keep]
        if len(set(self.corpus_ids)) != len(self.corpus_ids):
            raise EvalDataError(f"{source}: duplicate document ids in the corpus")
        return self


@dataclass
class LAReQATask:
    """Parallel questions; candidates are answer sentences in every language.

    ``questions[lang]`` maps a question id (shared across languages) to its text;
    ``candidates[lang]`` lists (candidate_id, sentence, context); ``answer[lang][qid]`` is the
    candidate id of the question's answer sentence in that language.
    """

    name: str
    languages: list[str]
    questions: dict[str, dict[str, str]]
    candidates: dict[str, list[tuple[str, str, str]]]
    answer: dict[str, dict[str, str]]

    def relevant(self, qid: str, langs: list[str]) -> set[str]:
        return {self.answer[lang][qid] for lang in langs if qid in self.answer[lang]}


def lareqa_settings(task: LAReQATask) -> list[tuple[str, str]]:
    """All (query language, candidate language) pairs: n monolingual + n(n-1) cross-lingual."""
    return [(a, b) for a in task.languages for b in task.languages]
