"""The command-line layer: ``hybridir <subcommand>`` (``cli/main.py``) and one module per tool.

Why it exists: an installed package (``pip install .``) has no ``tools/`` folder, so each tool's
argument parsing lives here and ``tools/*.py`` are two-line aliases kept for existing commands.
Each module parses arguments and calls one library function; nothing in the library imports this
package (tests/unit/test_layering.py).
"""
