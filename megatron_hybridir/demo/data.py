"""``make_demo_data``: the synthetic parallel QA corpus of the embedded default.

Each entity has four facts (relation -> value). An item asks for one fact of one entity; its
positive passage states that fact among distractor facts about other entities (shuffled; two in the
test sets, zero to two in training), and
its hard negative states another fact of the same entity. Items are parallel over the six languages
of ``languages.py``. Entities are split train / dev / test, so test questions are about unseen
entities (zero-shot). Written:

  train.jsonl                 parallel records in the training format (docs/design.md §7.1)
  train.second.jsonl          only with ``second_source_entities``: a second source (module notes)
  tokenizer_text.txt          text for training the SentencePiece tokenizer
  test/lareqa/<lang>.json     XQuAD-R-like LAReQA files (sentences + sentence_breaks per paragraph)
  test/beir/<lang>/           BEIR folders per language (corpus.jsonl, queries.jsonl, qrels/test.tsv)
  dev/...                     the same for the dev entities

``second_source_entities=n`` (default 0: the output is byte-identical to the generator without the
option, tested) adds a second training source about n further entities, in its own register: terse
questions (``<entity> is <relation> what``) and list-like passages (``<entity> <relation> <value>``),
from the same lexicons (``Language.ask_terse`` / ``statement_terse``). Preprocessed as a second
file it is a second source, so same-source batches (``data.same_source_batches``) have two styles
to keep apart. Its draws come from their own generator, so the first source, the tokenizer text's
first part and the test and dev sets are those of the default; the test sets stay in the first
source's style.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from megatron_hybridir.demo.languages import RELATIONS, VALUES, Language, build_languages, entity_names


@dataclass
class DemoSizes:
    train_entities: int = 600
    dev_entities: int = 40
    test_entities: int = 100
    facts_per_entity: int = 4


def _facts(rng, names):
    facts = {}
    for name in names:
        relations = rng.choice(RELATIONS, 4, replace=False)
        facts[name] = {r: VALUES[r][rng.integers(len(VALUES[r]))] for r in relations}
    return facts


def _items(rng, names, facts, per_entity, test):
    """(id, entity, relation, passage facts in order, negative fact) per item."""
    items = []
    for name in names:
        for relation in list(facts[name])[:per_entity]:
            # 0-2 distractor facts, so the model meets the asked fact alone and among others
            # (the LAReQA test candidates are single sentences, the BEIR test passages have three).
            count = 2 if test else int(rng.integers(0, 3))
            others = rng.choice([n for n in names if n != name], count, replace=False)
            distract = [(o, r := rng.choice(list(facts[o])), facts[o][r]) for o in others]
            sentences = [(name, relation, facts[name][relation])] + distract
            order = rng.permutation(len(sentences))
            other_rel = rng.choice([r for r in facts[name] if r != relation])
            items.append({"id": f"{name}-{relation}", "entity": name, "relation": relation,
                          "sentences": [sentences[k] for k in order],
                          "answer": int(np.where(order == 0)[0][0]),
                          "negative": (name, other_rel, facts[name][other_rel])})
    return items


def _passage(lang: Language, sentences, style: str = "plain") -> list[str]:
    say = lang.statement if style == "plain" else lang.statement_terse
    return [say(*s) for s in sentences]


def _write_train(handle, text, items, languages: dict[str, Language], style: str) -> None:
    ask = {"plain": Language.ask, "terse": Language.ask_terse}[style]
    say = {"plain": Language.statement, "terse": Language.statement_terse}[style]
    for item in items:
        record = {"id": item["id"], "query": {}, "positive": {}, "negatives": [{}]}
        for code, lang in languages.items():
            record["query"][code] = ask(lang, item["entity"], item["relation"])
            record["positive"][code] = " ".join(_passage(lang, item["sentences"], style))
            record["negatives"][0][code] = say(lang, *item["negative"])
            text.write(record["query"][code] + "\n" + record["positive"][code] + "\n")
        handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def _write_split(folder: Path, items, languages: dict[str, Language]) -> None:
    (folder / "lareqa").mkdir(parents=True, exist_ok=True)
    for code, lang in languages.items():
        paragraphs = []
        beir = folder / "beir" / code
        (beir / "qrels").mkdir(parents=True, exist_ok=True)
        with open(beir / "corpus.jsonl", "w") as corpus, open(beir / "queries.jsonl", "w") as queries, \
                open(beir / "qrels" / "test.tsv", "w") as qrels:
            qrels.write("query-id\tcorpus-id\tscore\n")
            for item in items:
                sentences = _passage(lang, item["sentences"])
                context, breaks = "", []
                for s in sentences:
                    breaks.append([len(context), len(context) + len(s)])
                    context += s + " "
                start = breaks[item["answer"]][0]
                question = lang.ask(item["entity"], item["relation"])
                paragraphs.append({"context": context.strip(), "sentences": sentences,
                                   "sentence_breaks": breaks,
                                   "qas": [{"id": item["id"], "question": question,
                                            "answers": [{"text": sentences[item["answer"]], "answer_start": start}]}]})
                corpus.write(json.dumps({"_id": item["id"], "title": "", "text": context.strip()},
                                        ensure_ascii=False) + "\n")
                queries.write(json.dumps({"_id": item["id"], "text": question}, ensure_ascii=False) + "\n")
                qrels.write(f"{item['id']}\t{item['id']}\t1\n")
        (folder / "lareqa" / f"{code}.json").write_text(json.dumps(
            {"version": "demo", "data": [{"title": "demo", "paragraphs": paragraphs}]}, ensure_ascii=False))


def make_demo_data(output: str | Path, *, seed: int = 0, sizes: DemoSizes = DemoSizes(),
                   second_source_entities: int = 0) -> dict:
    """Write the demo corpus into ``output``; returns a summary (counts, languages)."""
    if isinstance(second_source_entities, bool) or not isinstance(second_source_entities, int) \
            or second_source_entities < 0:
        raise ValueError(f"make_demo_data: second_source_entities must be an integer >= 0, got "
                         f"{second_source_entities!r}")
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    languages = build_languages(seed)
    total = sizes.train_entities + sizes.dev_entities + sizes.test_entities
    names = entity_names(total, seed)
    splits = {"train": names[:sizes.train_entities],
              "dev": names[sizes.train_entities:sizes.train_entities + sizes.dev_entities],
              "test": names[sizes.train_entities + sizes.dev_entities:]}
    facts = _facts(rng, names)
    items = {split: _items(rng, members, facts, sizes.facts_per_entity, test=split != "train")
             for split, members in splits.items()}
    second = []
    if second_source_entities:
        # Its own generator and entities after the default ones (entity_names is prefix-stable),
        # so nothing above draws differently.
        second_rng = np.random.default_rng([seed, 2])
        extra = entity_names(total + second_source_entities, seed)[total:]
        second = _items(second_rng, extra, _facts(second_rng, extra), sizes.facts_per_entity,
                        test=False)
    with open(output / "train.jsonl", "w") as f, open(output / "tokenizer_text.txt", "w") as text:
        text.write("Query: Passage:\n")
        _write_train(f, text, items["train"], languages, "plain")
        if second:
            with open(output / "train.second.jsonl", "w") as g:
                _write_train(g, text, second, languages, "terse")
    for split in ("dev", "test"):
        _write_split(output / split, items[split], languages)
    summary = {"languages": {c: {"script": l.script, "order": l.order, "question": l.question}
                             for c, l in languages.items()},
               "items": {k: len(v) for k, v in items.items()},
               "entities": {k: len(v) for k, v in splits.items()}, "seed": seed}
    if second:      # only then: the default summary.json stays byte-identical
        summary["sources"] = {"train.jsonl": len(items["train"]), "train.second.jsonl": len(second)}
        summary["second_source_entities"] = second_source_entities
    (output / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
