"""``hybridir evaluate --help`` documents every setting from the docstrings under EvalConfig's and
EncoderConfig's fields (issue 27: field docstrings are the help, as for training configs)."""

from __future__ import annotations

import dataclasses

import pytest

from megatron_hybridir import evaluate
from megatron_hybridir.config.help import field_docs
from megatron_hybridir.evaluation.config import EvalConfig
from megatron_hybridir.evaluation.encoder import EncoderConfig


def test_every_setting_is_listed_with_its_docstring(capsys):
    with pytest.raises(SystemExit) as exit_:
        evaluate.main(["--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for cls, prefix in ((EvalConfig, ""), (EncoderConfig, "encoder.")):
        docs = field_docs(cls)
        for f in dataclasses.fields(cls):
            if f.name == "encoder":
                continue
            assert f" {prefix}{f.name} (" in text, f.name
            if f.name in docs:
                assert " ".join(docs[f.name].split()) in text, f.name
    assert "instruction_template (str; default 'Instruct: {task}\\nQuery: {text}')" in text
