"""Registering a toy entry (pooling type, benchmark) for one test, with the registry restored after."""

from __future__ import annotations

import contextlib
from unittest.mock import patch


@contextlib.contextmanager
def temporarily_registered(registry: dict, register, *items):
    """``register(item)`` for each item inside the block; ``registry`` is as before afterwards."""
    with patch.dict(registry):
        for item in items:
            register(item)
        yield
