"""The error a checkpoint folder that cannot be read raises (a missing ``config.yaml`` /
``model.yaml`` / ``latest`` pointer, an unreadable ``provenance.json``). Corrupt files found by their
checksums raise ``checksums.CheckpointCorruptError`` instead, which names the last good step."""


class CheckpointError(ValueError):
    """A path does not name a usable checkpoint; the message names the path and what is wrong."""
