"""The pooling kinds config validation knows: each ``model.pooling`` name and the constraints it
puts on other model fields, as plain data.

Why it exists: the pooling registry (``model/pooling/``) holds torch modules; config validation
must not import them (config is the bottom layer, and ``--help``, presets and ``--dry-run`` stay
torch-free). Like ``model/families.py``, this module imports neither torch nor the config.
``register_pooling`` adds a kind here for a type registered in code, so a registered type still
reaches validation.

What it does not do: pool (``model/pooling/``), or count parameters and FLOPs (the registered
classes do).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


def _no_constraints(model: Any) -> list[tuple[str, str]]:
    return []


def _latent_heads_divide_hidden(model: Any) -> list[tuple[str, str]]:
    """NV-Embed's latent attention splits the hidden size over its heads."""
    if model.hidden_size % model.latent_num_heads:
        return [("model.latent_num_heads", f"hidden_size {model.hidden_size} is not divisible "
                                           f"by {model.latent_num_heads}")]
    return []


@dataclass(frozen=True)
class PoolingKind:
    name: str                     # the model.pooling value
    # (field, what is wrong) for every model field (a ModelConfig) this kind cannot work with
    check: Callable[[Any], list[tuple[str, str]]] = _no_constraints


# The built-in types of model/pooling/, in its registration order (a test holds the two equal:
# a built-in type missing here would be unknown to a process that never imported torch).
BUILT_IN: tuple[PoolingKind, ...] = (
    PoolingKind("mean"),
    PoolingKind("last"),
    PoolingKind("first"),
    PoolingKind("latent_attention", _latent_heads_divide_hidden),
)
# model.pooling name -> kind, in the registry's order (error messages list it).
POOLING_KINDS: dict[str, PoolingKind] = {k.name: k for k in BUILT_IN}


def add_pooling_kind(name: str) -> None:
    """Make ``name`` a valid ``model.pooling`` (without constraints) if it is not one already."""
    POOLING_KINDS.setdefault(name, PoolingKind(name))
