"""Synthetic languages for the demo: own lexicons, word orders and scripts.

Why it exists: the demo must behave like multilingual retrieval without downloading anything. Each
language has its own random lexicon (words built from its script's syllables), its own word order
for statements and questions, and its own sentence terminator; entity names are shared within a
script and transliterated letter by letter into the others — the anchors real languages have.
Scripts share no characters (Latin a-z, Cyrillic, Greek), so cross-script retrieval has to be
learned from the parallel data, which is what hybrid batches are about.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SCRIPTS = {
    "latin": ("bdfgklmnprstvz", "aeiou"),
    "cyrillic": ("бдфгклмнпрствз", "аеиоу"),
    "greek": ("βδφγκλμνπρστζξ", "αειου"),
}
# Latin -> script letter maps, for entity names (same consonant / vowel positions).
TRANSLITERATE = {name: str.maketrans(SCRIPTS["latin"][0] + SCRIPTS["latin"][1], cons + vow)
                 for name, (cons, vow) in SCRIPTS.items()}

# code: (script, statement order, question order); codes are synthetic (x* Latin, y* Cyrillic, z* Greek).
LANGUAGES = {
    "xa": ("latin", "SVO", "front"), "xb": ("latin", "SOV", "end"), "xc": ("latin", "VSO", "front"),
    "ya": ("cyrillic", "SVO", "end"), "yb": ("cyrillic", "SOV", "front"), "za": ("greek", "VSO", "end"),
}

RELATIONS = ["color", "city", "animal", "food", "tool", "river", "instrument", "sport"]
VALUES = {r: [f"{r}{k}" for k in range(12)] for r in RELATIONS}
FUNCTION_WORDS = ["of", "is", "what", "stop"]


def _word(rng: np.random.Generator, script: str, syllables: int) -> str:
    cons, vow = SCRIPTS[script]
    return "".join(cons[rng.integers(len(cons))] + vow[rng.integers(len(vow))] for _ in range(syllables))


@dataclass
class Language:
    code: str
    script: str
    order: str
    question: str
    lexicon: dict

    def name(self, latin_name: str) -> str:
        return latin_name.translate(TRANSLITERATE[self.script])

    def statement(self, entity: str, relation: str, value: str) -> str:
        w = self.lexicon
        e = self.name(entity)
        words = {"SVO": [w[relation], w["of"], e, w["is"], w[value]],
                 "SOV": [e, w["of"], w[relation], w[value], w["is"]],
                 "VSO": [w["is"], w[value], w[relation], w["of"], e]}[self.order]
        return " ".join(words + [w["stop"]])

    def ask(self, entity: str, relation: str) -> str:
        w = self.lexicon
        body = [w[relation], w["of"], self.name(entity)]
        return " ".join([w["what"], *body] if self.question == "front" else [*body, w["what"]])

    # The second source's register (``make_demo_data(second_source_entities=...)``): the same
    # words in another arrangement, so its items differ in style from the first source's but
    # need no new vocabulary (a new lexicon entry would change every default word's draw).
    def ask_terse(self, entity: str, relation: str) -> str:
        w = self.lexicon
        return " ".join([self.name(entity), w["is"], w[relation], w["what"]])

    def statement_terse(self, entity: str, relation: str, value: str) -> str:
        w = self.lexicon
        return " ".join([self.name(entity), w[relation], w[value], w["stop"]])


def build_languages(seed: int = 0) -> dict[str, Language]:
    concepts = FUNCTION_WORDS + RELATIONS + [v for r in RELATIONS for v in VALUES[r]]
    out = {}
    for n, (code, (script, order, question)) in enumerate(LANGUAGES.items()):
        rng = np.random.default_rng([seed, n])
        lexicon, used = {}, set()
        for concept in concepts:
            while True:
                word = _word(rng, script, 1 if concept in FUNCTION_WORDS else int(rng.integers(2, 4)))
                if word not in used:
                    used.add(word)
                    lexicon[concept] = word
                    break
        out[code] = Language(code, script, order, question, lexicon)
    return out


def entity_names(count: int, seed: int) -> list[str]:
    rng = np.random.default_rng([seed, 99])
    names: list[str] = []
    seen = set()
    while len(names) < count:
        name = _word(rng, "latin", int(rng.integers(2, 4)))
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names
