"""From finished cells to paired comparisons: score tables, the comparison list, Holm adjustment.

Why it exists: ``study.report`` prints, and ``study.plots`` draws, the same numbers; both take them
from :func:`analyse`. The comparisons are those the issue names — every hybrid alpha against
monolingual (alpha=1) and cross-lingual (alpha=0) batches at each size, each size against the next
at each alpha — plus how the hybrid's advantage changes from one size to the next (a difference of
differences, the test of "the trade-off narrows / widens"). Every one is a paired bootstrap over the
same test queries and seeds (``study.stats``); p-values are Holm-adjusted over all of them.
What it does not do: run cells or format text.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from megatron_hybridir.study.scoring import METRICS
from megatron_hybridir.study.stats import PairedResult, holm, paired_bootstrap_diff

MONO, CROSS = 1.0, 0.0


@dataclass
class Comparison:
    kind: str            # "hybrid vs monolingual" | "hybrid vs cross-lingual" | "size" | "advantage vs size"
    label: str           # e.g. "M: alpha=0.5 - alpha=1"
    metric: str
    size: str            # the size (or "S->M" for size steps)
    alpha: Optional[float]
    result: PairedResult
    p_holm: float = 1.0

    @property
    def significant(self) -> bool:
        return self.p_holm < 0.05

    def as_dict(self) -> dict:
        return {"kind": self.kind, "label": self.label, "metric": self.metric, "size": self.size,
                "alpha": self.alpha, **asdict(self.result), "p_holm": self.p_holm,
                "significant": self.significant, "seeds_agree": self.result.seeds_agree}


@dataclass
class Study:
    cells: list[dict]                       # finished cell records
    sizes: list[str]                        # by parameters, ascending
    parameters: dict[str, int]
    alphas: list[float]
    scores: dict[tuple[str, float, int], dict[str, dict[str, float]]]   # (size, alpha, seed) -> per query

    def seeds(self, *keys: tuple[str, float]) -> list[int]:
        """Seeds finished for every (size, alpha) in ``keys``."""
        sets = [{s for (z, a, s) in self.scores if (z, a) == key} for key in keys]
        return sorted(set.intersection(*sets)) if sets else []

    def table(self, size: str, alpha: float, metric: str, seeds: list[int],
              queries: list[str]) -> np.ndarray:
        return np.array([[self.scores[(size, alpha, s)][metric][q] for q in queries] for s in seeds])

    def queries(self, metric: str, keys: list[tuple[str, float]], seeds: list[int]) -> list[str]:
        sets = [set(self.scores[(z, a, s)][metric]) for z, a in keys for s in seeds]
        return sorted(set.intersection(*sets))


class StudyError(FileNotFoundError):
    """Nothing to report on: no finished cell (the message names the failed ones and their logs)."""


def load_study(out: str | Path) -> Study:
    cells, scores = [], {}
    for path in sorted(Path(out).glob("cells/*/cell.json")):
        record = json.loads(path.read_text())
        cells.append(record)
        scores[(record["size"], float(record["alpha"]), int(record["seed"]))] = json.loads(
            (path.parent / "scores.json").read_text())
    if not cells:
        failed = sorted(Path(out).glob("cells/*/failed.json"))
        if failed:
            lines = []
            for path in failed:
                try:
                    error = json.loads(path.read_text()).get("error", "failed")
                except json.JSONDecodeError:
                    error = f"unreadable {path.name}"
                lines.append(f"  {path.parent.name}: {error}; log: {path.parent / 'log.txt'}")
            raise StudyError(f"{out}: no finished cells to report on; every cell that ran failed "
                             f"({len(failed)}):\n" + "\n".join(lines)
                             + "\nFix the cause and rerun the same command (failed cells are "
                               "retried, finished ones skipped)")
        raise StudyError(f"{out}: no finished cells (cells/*/cell.json); run the grid first")
    parameters = {c["size"]: c["parameters"] for c in cells}
    sizes = sorted(parameters, key=parameters.get)
    alphas = sorted({float(c["alpha"]) for c in cells})
    return Study(cells, sizes, parameters, alphas, scores)


def _diff(study: Study, metric: str, plus: list[tuple[str, float]], minus: list[tuple[str, float]]
          ) -> Optional[np.ndarray]:
    keys = plus + minus
    seeds = study.seeds(*keys)
    if not seeds:
        return None
    queries = study.queries(metric, keys, seeds)
    if not queries:
        return None
    total = sum(study.table(z, a, metric, seeds, queries) for z, a in plus)
    return total - sum(study.table(z, a, metric, seeds, queries) for z, a in minus)


def _specs(study: Study) -> list[tuple[str, str, str, Optional[float], list, list]]:
    """(kind, label, size, alpha, plus keys, minus keys) of every comparison."""
    specs = []
    hybrids = [a for a in study.alphas if a not in (MONO, CROSS)]
    for size in study.sizes:
        for h in hybrids:
            for base, kind in ((MONO, "hybrid vs monolingual"), (CROSS, "hybrid vs cross-lingual")):
                if base in study.alphas:
                    specs.append((kind, f"{size}: alpha={h:g} - alpha={base:g}", size, h,
                                  [(size, h)], [(size, base)]))
    for small, large in zip(study.sizes, study.sizes[1:]):
        for a in study.alphas:
            specs.append(("size", f"alpha={a:g}: {large} - {small}", f"{small}->{large}", a,
                          [(large, a)], [(small, a)]))
        for h in hybrids:
            for base, name in ((MONO, "monolingual"), (CROSS, "cross-lingual")):
                if base in study.alphas:
                    specs.append(("advantage vs size",
                                  f"(alpha={h:g} - {name}) at {large} minus at {small}",
                                  f"{small}->{large}", h,
                                  [(large, h), (small, base)], [(large, base), (small, h)]))
    return specs


def analyse(study: Study, *, draws: int = 10_000, metrics: tuple[str, ...] = METRICS) -> list[Comparison]:
    comparisons = []
    for n, (kind, label, size, alpha, plus, minus) in enumerate(_specs(study)):
        for m, metric in enumerate(metrics):
            diff = _diff(study, metric, plus, minus)
            if diff is None:
                continue
            result = paired_bootstrap_diff(diff, draws=draws, seed=1000 * n + m)
            comparisons.append(Comparison(kind, label, metric, size, alpha, result))
    for c, p in zip(comparisons, holm([c.result.p_value for c in comparisons])):
        c.p_holm = p
    return comparisons


def cell_means(study: Study) -> dict[tuple[str, float], dict[str, tuple[float, float, int]]]:
    """(size, alpha) -> metric -> (mean over seeds, population std over seeds, seeds)."""
    out: dict = {}
    for c in study.cells:
        out.setdefault((c["size"], float(c["alpha"])), []).append(c["summary"])
    return {key: {m: (float(np.mean([r[m] for r in rows])), float(np.std([r[m] for r in rows])),
                      len(rows)) for m in rows[0]}
            for key, rows in out.items()}
