"""The config reference ``python -m megatron_hybridir.train --help`` prints: every field's dotted
name, type (choices, for ``Literal`` fields), default and docstring.

Why it exists: the docstrings under the fields of ``config/schema.py`` are the documentation of a
run's knobs; reading them from the source (``ast``) keeps ``--help`` and the schema one text.

What it does not do: parse arguments (``train.py``) or validate anything.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
import types
import typing
from typing import Any, Literal, NamedTuple

from megatron_hybridir.config.schema import RunConfig


class FieldHelp(NamedTuple):
    path: str      # dotted name, as written in YAML or an override
    type: str
    default: Any
    doc: str


def field_docs(cls: type) -> dict[str, str]:
    """Field name -> the string literal written under it in ``cls``'s source."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body
    docs = {}
    for node, after in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)):
            docs[node.target.id] = inspect.cleandoc(after.value.value)
    return docs


def type_text(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return "one of " + " | ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        inner = [type_text(a) for a in args if a is not type(None)]
        return " | ".join(inner) + (" or null" if type(None) in args else "")
    if origin in (list, tuple):
        return f"list of {type_text(args[0]) if args else 'values'}"
    if annotation is Any:
        return "any"
    return getattr(annotation, "__name__", str(annotation))


def _section(annotation: Any) -> type | None:
    if dataclasses.is_dataclass(annotation):
        return annotation
    return next((a for a in typing.get_args(annotation) if dataclasses.is_dataclass(a)), None)


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory()  # type: ignore[misc]


def describe(cls: type = RunConfig, prefix: str = "") -> list[FieldHelp]:
    """Every leaf field of ``cls``, sections (optional ones such as ``model.lora`` too) expanded."""
    hints, docs, out = typing.get_type_hints(cls), field_docs(cls), []
    for f in dataclasses.fields(cls):
        section = _section(hints[f.name])
        if section is not None:
            out.extend(describe(section, f"{prefix}{f.name}."))
        else:
            out.append(FieldHelp(f"{prefix}{f.name}", type_text(hints[f.name]), _default(f),
                                 docs.get(f.name, "")))
    return out


def format_help(cls: type = RunConfig, *, width: int = 100) -> str:
    lines = []
    for item in describe(cls):
        default = "null" if item.default is None else item.default
        if isinstance(default, str) and "\n" in default:
            default = repr(default)               # one line: the template's line break as \n
        lines.append(f"  {item.path}  ({item.type}; default {default})")
        lines.extend(textwrap.wrap(" ".join(item.doc.split()), width,
                                   initial_indent=" " * 6, subsequent_indent=" " * 6))
    return "\n".join(lines)
