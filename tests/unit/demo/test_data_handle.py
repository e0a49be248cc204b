"""The demo's data record: frozen (a step derives a changed copy, it cannot change the one another
step holds) and its languages a tuple of codes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from megatron_hybridir.demo.data_handle import DemoData


def _data(**kw) -> DemoData:
    return DemoData(**{"root": Path("d"), "tokenizer": Path("d/tok"), "indexed": Path("d/idx"),
                       "vocab_size": 10, "languages": ["xa", "ya"], **kw})


def test_demo_data_is_frozen_and_derived_by_replace():
    data = _data()
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'indexed'"):
        data.indexed = Path("elsewhere")
    mined = dataclasses.replace(data, indexed=Path("m/idx"), init_from=Path("first"))
    assert (data.indexed, data.init_from) == (Path("d/idx"), None)
    assert (mined.indexed, mined.init_from, mined.languages) == (Path("m/idx"), Path("first"),
                                                                  ("xa", "ya"))


def test_demo_data_rejects_unknown_fields_and_a_string_of_languages():
    with pytest.raises(TypeError, match="unexpected keyword argument 'indexd'"):
        _data(indexd=Path("x"))
    with pytest.raises(TypeError, match="DemoData.languages: expected a sequence of language "
                                        "codes, got 'xa'"):
        _data(languages="xa")
