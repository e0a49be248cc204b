"""The pooling registry: one class per pooling type, looked up by its ``model.pooling`` name.

Why it exists: a pooling type is known in several places — config validation, the head, the
parameter and FLOP counts, sentence-transformers export and import. Each class carries everything
those places need, so they read the registry instead of keeping their own lists:

- ``name``: the ``model.pooling`` value;
- ``st_mode``: the sentence-transformers ``Pooling`` flag it equals (``pooling_mode_*``), or None
  when sentence-transformers has none (export refuses the model, import never picks it);
- ``module_name``: the head attribute it is stored under, hence its checkpoint keys
  (``head.<module_name>.*``; only types with parameters have any);
- ``parameter_count`` / ``forward_flops``: exact counts for ``model.builder.count_parameters`` and
  ``training.flops``;
- constraints on other model fields, which config validation reports with the field, are not
  here: validation reads them, torch-free, from ``model/pooling_kinds.py`` (where
  ``register_pooling`` adds a kind without constraints for a type registered in code).

A type registers itself with :func:`register_pooling`; ``model/pooling/__init__.py`` imports the
modules that hold the types (docs/design.md §1, README "Layout": adding one is its file plus one
line there). What it does not do: the rest of the head (pooler, projection, normalisation, scale:
``head.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Optional

from torch import Tensor, nn

from megatron_hybridir.model.pooling_kinds import add_pooling_kind

if TYPE_CHECKING:
    from megatron_hybridir.config import ModelConfig


class PoolingType(nn.Module):
    """Token states [b, s, h] and the real-token mask [b, s] -> one vector [b, h] per sequence."""

    name: ClassVar[str]
    st_mode: ClassVar[Optional[str]] = None
    module_name: ClassVar[str] = "pool"

    def __init__(self, model: "ModelConfig"):
        super().__init__()

    def forward(self, hidden: Tensor, mask: Tensor) -> Tensor:
        raise NotImplementedError

    @classmethod
    def parameter_count(cls, model: "ModelConfig") -> int:
        return 0

    @classmethod
    def forward_flops(cls, model: "ModelConfig", seq_len: int) -> float:
        """Multiply-adds x 2 of one sequence's forward pass; element-wise work is not counted (as
        for the transformer layers in ``training/flops.py``)."""
        return 0.0


# config name -> class, in registration order (the order error messages and CLI choices list).
POOLINGS: dict[str, type[PoolingType]] = {}


def register_pooling(cls: type[PoolingType]) -> type[PoolingType]:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    if not (isinstance(cls, type) and issubclass(cls, PoolingType)):
        raise TypeError(f"{cls!r} is not a PoolingType subclass")
    if cls.name in POOLINGS and POOLINGS[cls.name] is not cls:
        raise ValueError(f"pooling {cls.name!r} is already registered by "
                         f"{POOLINGS[cls.name].__qualname__}")
    POOLINGS[cls.name] = cls
    add_pooling_kind(cls.name)
    return cls


def pooling_class(name: str) -> type[PoolingType]:
    try:
        return POOLINGS[name]
    except KeyError:
        raise ValueError(f"unknown pooling {name!r}; expected one of {list(POOLINGS)}") from None


def sentence_transformers_modes() -> dict[str, str]:
    """model.pooling -> sentence-transformers ``Pooling`` flag, for the types that have one."""
    return {name: cls.st_mode for name, cls in POOLINGS.items() if cls.st_mode is not None}
