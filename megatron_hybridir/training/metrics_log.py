"""Where step metrics go: JSONL in the run directory, TensorBoard when installed, the console; and
the per-kind batch counters they carry.

Why it exists: the loop should compute metrics, not format them. Only global rank 0 writes. In an
interactive terminal a progress bar replaces the periodic console lines; in batch jobs (Slurm
logs) the lines are printed every ``log_interval`` steps.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Optional

from megatron_hybridir import atomic
from megatron_hybridir.data.batch_kind import BatchKind

logger = logging.getLogger(__name__)


class BatchKindCounts:
    """Trained batches per kind: ``<label>_batches`` in every record, ``extra.kinds`` in checkpoints.

    Each ``BatchKind`` is its own counter (mixed batches are not cross-lingual ones). Checkpoints
    written before the mixed counter lack it (their mixed batches sit in ``cross-lingual``);
    counts keyed by the kind's int value (``0``, ``"1"``) load too.
    """

    def __init__(self):
        self.counts = {kind.label: 0 for kind in BatchKind}

    def add(self, kind: BatchKind) -> None:
        self.counts[BatchKind(kind).label] += 1

    def restore(self, saved: dict, *, where: str = "checkpoint") -> None:
        labels = {kind.label for kind in BatchKind}
        for key, count in saved.items():
            if isinstance(key, str) and key in labels:
                label = key
            elif str(key).isdigit() and int(key) in BatchKind._value2member_map_:
                label = BatchKind(int(key)).label
            else:
                raise ValueError(f"{where}: extra.kinds has unknown batch kind {key!r}; expected "
                                 f"one of {sorted(labels)} or {[int(k) for k in BatchKind]}")
            self.counts[label] = int(count)

    def state(self) -> dict:
        return dict(self.counts)

    def record(self) -> dict:
        return {f"{label}_batches": count for label, count in self.counts.items()}


class SourceBatchCounts:
    """Trained batches per source when each batch has one (``data.same_source_batches``):
    ``source_batches`` ({source: count}) in every record, ``extra.sources`` in checkpoints."""

    def __init__(self, names: list[str]):
        self.names, self.counts = names, {name: 0 for name in names}

    def add(self, source: int) -> None:
        self.counts[self.names[source]] += 1

    def restore(self, saved: dict, *, where: str = "checkpoint") -> None:
        unknown = sorted(set(saved) - set(self.counts))
        if unknown:
            raise ValueError(f"{where}: extra.sources has unknown sources {unknown}; this run's data "
                             f"has {self.names}")
        self.counts.update({name: int(count) for name, count in saved.items()})

    def state(self) -> dict:
        return dict(self.counts)

    def record(self) -> dict:
        return {"source_batches": dict(self.counts)}


SUPERSEDED = "metrics.superseded.jsonl"


def _drop_records_after(path: Path, step: int) -> None:
    """A run killed after its last checkpoint logged steps it will train again on resume (and maybe
    half a line): keep only the records up to the step it resumes from, so the log holds each
    step once, as trained by the run that continued. The records taken out are appended to
    ``metrics.superseded.jsonl``, not lost.

    NOTE: this rewrite is safe only because the caller holds the run directory's lock
    (``training/run_lock``): a second job appending to the old file would lose its records."""
    if not path.exists():
        return
    kept, dropped = [], []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue   # torn last line of a killed run
        (kept if record.get("step", 0) <= step else dropped).append(line)
    if dropped:
        with (path.parent / SUPERSEDED).open("a") as side:
            side.write("".join(d + "\n" for d in dropped))
    atomic.write_text(path, "".join(k + "\n" for k in kept))


class MetricsLog:
    def __init__(self, run_dir: Optional[Path], *, enabled: bool, total_steps: int,
                 start_step: int, log_interval: int):
        self.enabled, self.log_interval = enabled, log_interval
        self.jsonl = self.tensorboard = self.bar = None
        if not enabled:
            return
        if run_dir is not None:
            _drop_records_after(run_dir / "metrics.jsonl", start_step)
            self.jsonl = (run_dir / "metrics.jsonl").open("a")
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tensorboard = SummaryWriter(str(run_dir / "tensorboard"))
            except ImportError:
                logger.info("tensorboard not installed: metrics go to metrics.jsonl only")
        if sys.stdout.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True)

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        step = record["step"]
        if self.jsonl is not None:
            self.jsonl.write(json.dumps(record) + "\n")
            self.jsonl.flush()
        if self.tensorboard is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self.tensorboard.add_scalar(key, value, step)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{record['loss']:.4f}", acc=f"{record['accuracy']:.3f}")
        elif step % self.log_interval == 0 or step == 1:
            mfu = f" MFU {record['mfu']:.1%}" if "mfu" in record else ""
            if "padding_fraction" in record:
                mfu += f" padding {record['padding_fraction']:.0%}"
            print(f"step {step} loss {record['loss']:.4f} acc {record['accuracy']:.3f} "
                  f"lr {record['lr']:.2e} grad-norm {record['grad_norm']:.3f} "
                  f"{record['step_time']:.2f}s {record['samples_per_s']:.1f} pairs/s "
                  f"{record['tokens_per_s']:.0f} tok/s {record['tflops_per_gpu']:.3f} "
                  f"TFLOP/s/GPU{mfu}", flush=True)

    def close(self) -> None:
        for sink in (self.jsonl, self.tensorboard, self.bar):
            if sink is not None:
                sink.close()
