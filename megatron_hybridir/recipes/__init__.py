"""The run recipes shipped with the package (``*.yaml`` here), read through importlib.resources.

Why it exists: an installed package (``pip install .``) has no repository around it, yet the demos
start from ``demo_cpu.yaml`` / ``finetune_minilm.yaml`` and the README's commands name
``examples/<recipe>.yaml``. The YAML files live here as package data; ``examples/*.yaml`` in the
repository are links to them (one copy, so they cannot drift), and ``resolve_config`` lets
``hybridir train --config examples/tiny_cpu.yaml`` find the packaged recipe from any folder.

What it does not do: parse the YAML (``config.load_config`` does) or hold user configs.
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

from megatron_hybridir.config import ConfigError

log = logging.getLogger(__name__)

# The folder the README's commands name; a missing `examples/<recipe>.yaml` means the packaged one.
DOCUMENTED_FOLDER = "examples"


def names() -> list[str]:
    """The packaged recipes, without ``.yaml``."""
    return sorted(f.name.removesuffix(".yaml") for f in resources.files(__name__).iterdir()
                  if f.name.endswith(".yaml"))


def recipe_path(name: str) -> Path:
    """The file of the packaged recipe ``name`` (``demo_cpu`` or ``demo_cpu.yaml``)."""
    stem = name.removesuffix(".yaml")
    if stem not in names():
        raise ConfigError(f"{name!r} is not a packaged recipe; packaged: {', '.join(names())}")
    # A wheel installs into a folder, so this is a real file a child process can be given (a
    # zipped install would need importlib.resources.as_file; none is built).
    return Path(str(resources.files(__name__).joinpath(f"{stem}.yaml")))


def resolve_config(path: str) -> str:
    """``path`` when it is a file; else, when it names a packaged recipe as ``NAME``,
    ``NAME.yaml`` or ``examples/NAME.yaml``, that recipe's file; else a ConfigError naming both."""
    given = Path(path)
    if given.is_file():
        return path
    stem = given.name.removesuffix(".yaml")
    if str(given.parent) in (".", DOCUMENTED_FOLDER) and stem in names():
        packaged = str(recipe_path(stem))
        log.info("%s is not a file here: using the packaged recipe %s", path, packaged)
        return packaged
    raise ConfigError(f"--config {path}: no such file, and not a packaged recipe (NAME, NAME.yaml "
                      f"or {DOCUMENTED_FOLDER}/NAME.yaml with NAME one of {', '.join(names())})")
