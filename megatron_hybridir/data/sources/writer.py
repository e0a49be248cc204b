"""Write built training records as JSONL in the readers' format, with the leakage check and report.

Why it exists: every source module produces records; one place writes them so that they are all
checked the same way. Each record is first offered to the :class:`LeakFilter`, then parsed by
``readers.parse_record`` — the function training's readers use — so a record this module writes is
one ``tools/preprocess_data.py`` reads back; a record it would refuse stops the build here (or is
dropped and counted with ``on_error="skip"``). The file is written under a temporary name and
renamed into place when complete, so a failed build leaves no half file behind; the report goes to
``<output stem>.report.json`` and its summary to the console.

What it does not do: build records (the source modules) or tokenize (``data/preprocess.py``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Optional

from tqdm import tqdm

from megatron_hybridir import atomic
from megatron_hybridir.data.readers import DataError, ReadReport, parse_record
from megatron_hybridir.data.sources.leakage import LeakFilter
from megatron_hybridir.data.sources.report import BuildReport

ON_ERROR = ("raise", "skip")


def report_path(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(output.name.removesuffix(".jsonl") + ".report.json")


def check_output(output: str | Path) -> Path:
    output = Path(output)
    if output.suffix != ".jsonl":
        raise DataError(f"output {output}: expected a .jsonl file (what the training readers "
                        f"read as JSONL)")
    return output


def write_records(records: Iterable[tuple[str, dict]], output: str | Path, report: BuildReport, *,
                  languages: Iterable[str], leak: Optional[LeakFilter] = None,
                  on_error: str = "raise", quiet: bool = False) -> BuildReport:
    """Write ``(where, record)`` pairs to ``output``; the source counts its candidates and drops in
    ``report``, this function counts leaked, refused and kept ones."""
    if on_error not in ON_ERROR:
        raise DataError(f"on_error: expected one of {list(ON_ERROR)}, got {on_error!r}")
    output = check_output(output)
    langs = set(languages)
    report.output = str(output)
    if leak is not None:
        leak.start(report)
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic.atomic_file(output) as stage:
        with stage.open("w", encoding="utf-8") as out:
            for where, record in tqdm(records, desc=f"writing {output.name}", unit=" items",
                                      disable=quiet or None):
                if leak is not None and leak.leaked(record, where, report):
                    continue
                try:
                    item = parse_record(record, where=where, languages=langs,
                                        report=ReadReport(where))
                    line = _utf8_line(record, where)
                except DataError as err:
                    if on_error == "raise":
                        raise
                    report.drop(err.reason, where)
                    continue
                out.write(line)
                report.kept += 1
                report.languages.update(item.languages)
    report.write(report_path(output))
    if not quiet:
        print(report.summary())
    return report


def _utf8_line(record: dict, where: str) -> str:
    """The record's JSONL line; a text that is not valid Unicode (a lone surrogate, which
    ``json.loads`` accepts from a ``\\ud83d`` escape) is refused as the record's error instead of
    failing the whole build in the middle of the write."""
    line = json.dumps(record, ensure_ascii=False) + "\n"
    try:
        line.encode("utf-8")
    except UnicodeEncodeError as err:
        raise DataError(f"{where}: a text holds {err.object[err.start:err.end]!r}, an unpaired "
                        f"surrogate, which is not valid Unicode (a broken escape in the source?)",
                        reason="text is not valid Unicode (unpaired surrogate)") from None
    return line
