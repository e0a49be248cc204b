"""Writers of small benchmark folders in the real release formats (BEIR, DPR NQ, MIRACL, LAReQA)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

WORDS = ("river mountain castle harbor garden library market bridge forest valley island tower "
         "desert temple museum station meadow canyon glacier village").split()


def write_beir(folder: Path, n_docs: int = 30, n_queries: int = 8) -> Path:
    """Doc i talks about WORDS[i % 20] and a number; query j asks for doc j's pair of words."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "corpus.jsonl", "w") as f:
        for i in range(n_docs):
            text = f"the {WORDS[i % 20]} near the {WORDS[(i * 7 + 3) % 20]} is number {i}"
            f.write(json.dumps({"_id": f"d{i}", "title": f"title {i}", "text": text}) + "\n")
    with open(folder / "queries.jsonl", "w") as f:
        for j in range(n_queries):
            f.write(json.dumps({"_id": f"q{j}", "text": f"{WORDS[j % 20]} {WORDS[(j * 7 + 3) % 20]}"}) + "\n")
    (folder / "qrels").mkdir(exist_ok=True)
    with open(folder / "qrels" / "test.tsv", "w") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for j in range(n_queries):
            f.write(f"q{j}\td{j}\t1\n")
            f.write(f"q{j}\td{j + 20}\t2\n" if j + 20 < n_docs else "")
    return folder


def write_nq(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "psgs_w100.tsv", "w") as f:
        f.write("id\ttext\ttitle\n")
        for i in range(20):
            f.write(f"{i}\tThe {WORDS[i]} was founded in {1900 + i} by people.\t{WORDS[i].title()}\n")
    with open(folder / "nq-test.qa.csv", "w") as f:
        for i in range(5):
            f.write(f"when was the {WORDS[i]} founded\t['{1900 + i}']\n")
    return folder


def write_miracl(root: Path, lang: str = "sw") -> Path:
    topic = root / f"miracl-v1.0-{lang}"
    (topic / "topics").mkdir(parents=True, exist_ok=True)
    (topic / "qrels").mkdir(exist_ok=True)
    corpus = root / f"miracl-corpus-v1.0-{lang}"
    corpus.mkdir(parents=True, exist_ok=True)
    with gzip.open(corpus / "docs-0.jsonl.gz", "wt") as f:
        for i in range(12):
            f.write(json.dumps({"docid": f"{i}#0", "title": WORDS[i], "text": f"{WORDS[i]} {WORDS[i + 1]}"}) + "\n")
    with open(topic / "topics" / f"topics.miracl-v1.0-{lang}-dev.tsv", "w") as f:
        for j in range(4):
            f.write(f"{j}\t{WORDS[j]}\n")
    with open(topic / "qrels" / f"qrels.miracl-v1.0-{lang}-dev.tsv", "w") as f:
        for j in range(4):
            f.write(f"{j}\tQ0\t{j}#0\t1\n{j}\tQ0\t{j + 5}#0\t0\n")
    return root


def write_lareqa(folder: Path, languages=("en", "de", "xx"), n_paragraphs: int = 3,
                 drop: dict | None = None) -> Path:
    """Parallel paragraphs of 3 sentences; question p-s asks about sentence s of paragraph p.
    Language 'xx' writes every word reversed (a second 'lexicon'); ``drop`` = {lang: [qid]}."""
    folder.mkdir(parents=True, exist_ok=True)
    for lang in languages:
        word = (lambda w: w[::-1]) if lang == "xx" else (lambda w: w.upper() if lang == "de" else w)
        paragraphs = []
        for p in range(n_paragraphs):
            sentences = [f"{word(WORDS[(p * 3 + s) % 20])} {word(WORDS[(p * 5 + s + 1) % 20])} {s}."
                         for s in range(3)]
            context, breaks = "", []
            for s in sentences:
                start = len(context)
                context += s + " "
                breaks.append([start, start + len(s)])
            qas = [{"id": f"{p}-{s}", "question": f"{word(WORDS[(p * 3 + s) % 20])}?",
                    "answers": [{"text": sentences[s][:3], "answer_start": breaks[s][0]}]}
                   for s in range(3) if f"{p}-{s}" not in (drop or {}).get(lang, [])]
            paragraphs.append({"context": context, "sentences": sentences, "sentence_breaks": breaks,
                               "qas": qas})
        (folder / f"{lang}.json").write_text(json.dumps({"data": [{"title": "t", "paragraphs": paragraphs}]}))
    return folder
