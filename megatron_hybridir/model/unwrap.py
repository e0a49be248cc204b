"""``unwrap``: the EmbeddingModel inside the wrappers training puts around it.

Why it exists: checkpointing, the forward step, export and the benchmarks all need the bare model
behind Megatron's DDP / Float16Module wrappers (each of which holds it as ``.module``), and none of
them should import another's module to get it. What it does not do: build or wrap models
(``model/builder.py``, ``training/engine.py``).
"""

from __future__ import annotations


def unwrap(model):
    """The EmbeddingModel inside DDP / Float16Module wrappers."""
    while hasattr(model, "module"):
        model = model.module
    return model
