"""Task instructions on queries: the template, the documented per-benchmark defaults, and the
sentence-transformers prompt an instruction becomes.

Why it exists: LLM embedders (E5-Mistral, NV-Embed, Qwen3-Embedding) put a task instruction on
queries only, ``Instruct: {task}\\nQuery: {text}``; passages get none (or a document prompt).
Preprocessing (an instruction per source), evaluation (one per benchmark) and export (one per mteb
task in the sentence-transformers ``prompts``) must produce the same prefix for the same
instruction, or training and inference would see different ids. They all go through
:func:`instruction_prompt` here, at the bottom layer, so none imports the others.

sentence-transformers and mteb can only *prepend* a prompt, so a template must end with ``{text}``;
the prompt is the part before it with ``{task}`` filled in.

What it does not do: decide which instruction a source or benchmark gets (preprocessing and
evaluation configs do), or write files.
"""

from __future__ import annotations

import string
from typing import Optional

DEFAULT_TEMPLATE = "Instruct: {task}\nQuery: {text}"

# Documented defaults (README "Task instructions", docs/design.md): key -> (mteb task name or None,
# instruction). Keys are evaluation benchmark names (nq, miracl, xquad-r, mlqa-r, lareqa) and BEIR
# dataset names (the folder / hub name: scifact, fiqa, ...). BEIR and NQ instructions are
# E5-Mistral's (Wang et al. 2024, Table 13); the LAReQA ones name the answer sentence they rank.
TASK_INSTRUCTIONS: dict[str, tuple[Optional[str], str]] = {
    "nq": ("NQ", "Given a question, retrieve Wikipedia passages that answer the question"),
    "miracl": ("MIRACLRetrieval",
               "Given a question, retrieve Wikipedia passages that answer the question"),
    "xquad-r": ("XQuADRetrieval",
                "Given a question, retrieve the sentence that answers the question, in any language"),
    "mlqa-r": ("MLQARetrieval",
               "Given a question, retrieve the sentence that answers the question, in any language"),
    "lareqa": (None,
               "Given a question, retrieve the sentence that answers the question, in any language"),
    "arguana": ("ArguAna", "Given a claim, find documents that refute the claim"),
    "climate-fever": ("ClimateFEVER", "Given a claim about climate change, retrieve documents "
                                      "that support or refute the claim"),
    "dbpedia-entity": ("DBPedia", "Given a query, retrieve relevant entity descriptions from DBPedia"),
    "fever": ("FEVER", "Given a claim, retrieve documents that support or refute the claim"),
    "fiqa": ("FiQA2018", "Given a financial question, retrieve user replies that best answer the "
                         "question"),
    "hotpotqa": ("HotpotQA", "Given a multi-hop question, retrieve documents that can help answer "
                             "the question"),
    "msmarco": ("MSMARCO", "Given a web search query, retrieve relevant passages that answer the "
                           "query"),
    "nfcorpus": ("NFCorpus", "Given a question, retrieve relevant documents that best answer the "
                             "question"),
    "quora": ("QuoraRetrieval", "Given a question, retrieve questions that are semantically "
                                "equivalent to the given question"),
    "scidocs": ("SCIDOCS", "Given a scientific paper title, retrieve paper abstracts that are cited "
                           "by the given paper"),
    "scifact": ("SciFact", "Given a scientific claim, retrieve documents that support or refute the "
                           "claim"),
    "webis-touche2020": ("Touche2020", "Given a question, retrieve detailed and persuasive arguments "
                                       "that answer the question"),
    "trec-covid": ("TRECCOVID", "Given a query on COVID-19, retrieve documents that answer the "
                                "query"),
}


def check_template(template, *, field: str = "instruction_template") -> None:
    """A template sentence-transformers can apply: a string with exactly one ``{task}`` and ending
    in ``{text}`` (a prompt is prepended), no other fields."""
    if not isinstance(template, str):
        raise ValueError(f"{field}: expected a string like {DEFAULT_TEMPLATE!r}, got {template!r}")
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as err:
        raise ValueError(f"{field}: {template!r} is not a format string ({err})") from None
    if not template.endswith("{text}") or names.count("text") != 1:
        raise ValueError(f"{field}: {template!r} must end with {{text}} (the query; "
                         f"sentence-transformers can only prepend a prompt), e.g. "
                         f"{DEFAULT_TEMPLATE!r}")
    if names.count("task") != 1 or set(names) != {"task", "text"}:
        raise ValueError(f"{field}: {template!r} must hold {{task}} once and no field but {{task}} "
                         f"and {{text}}, e.g. {DEFAULT_TEMPLATE!r}")


def instruction_prompt(instruction, template: str = DEFAULT_TEMPLATE, *,
                       field: str = "instruction") -> str:
    """The query prompt (prepended to the text) for ``instruction`` under ``template``."""
    check_template(template)
    if not isinstance(instruction, str) or not instruction.strip():
        raise ValueError(f"{field}: expected a non-empty instruction string, got {instruction!r}")
    return template[: -len("{text}")].format(task=instruction)


def default_instruction(key: str) -> str:
    """The documented default instruction of a benchmark or BEIR dataset name."""
    if key not in TASK_INSTRUCTIONS:
        raise KeyError(key)
    return TASK_INSTRUCTIONS[key][1]


def mteb_task_prompts(template: str = DEFAULT_TEMPLATE, overrides: Optional[dict] = None, *,
                      field: str = "task_instructions") -> dict[str, str]:
    """``{"<mteb task>-query": prompt}`` for every documented task, ``overrides`` ({mteb task name:
    instruction}) replacing or adding instructions: the names mteb looks up first for a task's
    queries (``get_prompt_name``: task name + prompt type; documents fall through to "document")
    and ``encode(prompt_name=)`` accepts."""
    tasks = {name: text for name, text in TASK_INSTRUCTIONS.values() if name}
    for name, text in (overrides or {}).items():
        if not isinstance(name, str) or not name or name in ("query", "document"):
            raise ValueError(f"{field}: {name!r} is not a task name (expected an mteb task name "
                             f"such as 'SciFact'; 'query' and 'document' are the plain prompts)")
        tasks[name] = text
    return {f"{name}-query": instruction_prompt(text, template, field=f"{field}[{name!r}]")
            for name, text in tasks.items()}
