"""``python -m megatron_hybridir.train --help`` prints every config field (dotted name, type or
choices, default, docstring) read from the schema's source, and every field has a docstring."""

from __future__ import annotations

import dataclasses
import typing

from megatron_hybridir.config import LoraConfig, RunConfig
from megatron_hybridir.config.help import describe, field_docs
from megatron_hybridir.train import main


def _sections(cls):
    yield cls
    for hint in typing.get_type_hints(cls).values():
        for candidate in (hint, *typing.get_args(hint)):
            if dataclasses.is_dataclass(candidate):
                yield from _sections(candidate)


def test_every_field_of_every_section_has_a_docstring():
    for cls in set(_sections(RunConfig)):
        docs = field_docs(cls)
        missing = [f.name for f in dataclasses.fields(cls) if not docs.get(f.name)]
        assert not missing, f"{cls.__name__}: fields without a docstring: {missing}"


def test_docstrings_are_read_from_the_source_not_copied():
    docs = field_docs(LoraConfig)
    assert docs["alpha"] == "The update is scaled by alpha / rank."
    assert docs["train_head"].startswith("Also train the pooling head's parameters (projection,")
    assert "\n" in docs["train_head"] and "    " not in docs["train_head"]  # cleandoc'd


def test_help_lists_every_leaf_field_with_type_default_and_doc(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    items = describe()
    paths = [item.path for item in items]
    assert "model.lora.rank" in paths and "seq_length" in paths and "model" not in paths
    for item in items:
        default = "null" if item.default is None else item.default
        assert f"  {item.path}  ({item.type}; default {default})\n" in out, item.path
        assert " ".join(item.doc.split()[:4]) in " ".join(out.split()), item.path
    assert "  data.mode  (one of monolingual | cross-lingual | hybrid | mixed; default hybrid)" in out
    assert "  precision.fp8  (one of hybrid | e4m3 or null; default null)" in out
    assert "  model.lora.target_modules  (list of one of qkv | proj | fc1 | fc2; default " in out
    assert "  model.pooling  (str; default mean)" in out
