"""The study's budget rule: train to convergence on the dev split, with early stopping.

Why it exists: sizes are only comparable when each is trained as far as it usefully goes. A fixed
step count under-trains the larger models (the old scaling table), and a FLOP-matched budget gives
the larger models even fewer steps. So every cell of the grid is trained with the same rule:

- a constant learning rate after warmup (no cosine tied to a step count, so where a run stops
  does not change how it was trained up to there);
- every ``interval`` steps the checkpoint is exported and scored on the **dev** split (entities
  disjoint from train and test) by :func:`study.scoring.dev_score` — the mean of X->X and X->Y mAP,
  so neither side of the trade-off alone decides;
- training stops when the dev score has not improved by more than ``min_delta`` for ``patience``
  evaluations, or at ``max_steps`` (a cap that bounds the wall time; a cell that reaches it is
  flagged ``capped`` in the report, because it may not have converged);
- the reported model is the best dev checkpoint.

What it does not do: train (``training.trainer`` calls :meth:`EarlyStopping.update` through its
``on_checkpoint`` hook) or evaluate the test split (``study.grid``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional


@dataclass
class BudgetRule:
    max_steps: int = 240          # cap on optimizer steps
    interval: int = 60            # steps between dev evaluations (= checkpoint interval)
    patience: int = 2             # evaluations without improvement before stopping
    min_delta: float = 0.002      # an improvement must exceed this (dev-score units, mAP)

    def check(self) -> None:
        from megatron_hybridir.config import ConfigError

        if self.interval < 1 or self.max_steps < self.interval:
            raise ConfigError(f"budget: need 1 <= interval <= max_steps, got interval={self.interval}, "
                              f"max_steps={self.max_steps}")
        if self.patience < 1:
            raise ConfigError(f"budget.patience: expected >= 1, got {self.patience}")
        if self.min_delta < 0:
            raise ConfigError(f"budget.min_delta: expected >= 0, got {self.min_delta}")


@dataclass
class EarlyStopping:
    """Dev-score bookkeeping for one run; :meth:`update` says whether to stop."""

    rule: BudgetRule
    history: list[dict] = field(default_factory=list)
    best_step: Optional[int] = None
    best_score: float = float("-inf")
    stale: int = 0

    def update(self, step: int, score: float) -> tuple[bool, bool]:
        """Record the dev score at ``step``; returns (improved, stop)."""
        improved = score > self.best_score + self.rule.min_delta or self.best_step is None
        if improved:
            self.best_step, self.best_score, self.stale = step, score, 0
        else:
            self.stale += 1
        self.history.append({"step": step, "dev_score": score, "best": improved})
        stop = self.stale >= self.rule.patience or step >= self.rule.max_steps
        return improved, stop

    @property
    def capped(self) -> bool:
        """The last evaluation was still improving or within patience at the cap: maybe unconverged."""
        return bool(self.history) and self.stale < self.rule.patience

    def state(self) -> dict:
        return {"rule": asdict(self.rule), "history": self.history, "best_step": self.best_step,
                "best_dev_score": self.best_score, "capped": self.capped}

    def training_overrides(self) -> list[str]:
        """Config overrides that implement the rule in the trainer (constant LR after warmup)."""
        return [f"training.train_steps={self.rule.max_steps}",
                f"checkpoint.save_interval={self.rule.interval}", "checkpoint.keep_last=1"]
