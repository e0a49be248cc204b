"""The training loop: data -> Megatron schedule (optionally GradCache) -> optimizer -> checkpoints.

Why it exists: it is what ``python -m megatron_hybridir.train`` (and ``slurm/train_*.sh``) runs.
Each step's batch is a pure function of (seed, step), so resuming from ``latest`` reproduces the
uninterrupted run exactly. SIGTERM / SIGUSR1 finish the current step, save, and return normally so
a requeued job resumes by itself. Non-finite losses skip the step (no update) up to a limit.
``Trainer`` keeps each of these concerns in its own method (``resume``, ``step``, ``maybe_save``,
``on_preempt``); ``train`` is the entry point every caller uses.

What it does not do: build the model (``model/builder``), sample (``data/sampler``), or compute
the loss (``loss``, via ``training/engine`` or ``training/gradcache``).
"""

from __future__ import annotations

import logging
import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.distributed as dist
from megatron.core import parallel_state
from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer
from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler

from megatron_hybridir.checkpointing.model_state import load_model_weights
from megatron_hybridir.config import ConfigError, RunConfig, validate, validate_paths
from megatron_hybridir.config.initial_weights import check_initial_weights
from megatron_hybridir.data.batch import Batch
from megatron_hybridir.data.packing import pack_for_layout, split_by_tokens
from megatron_hybridir.model.builder import build_model_chunks
from megatron_hybridir.runtime.distributed import compute_device, initialize, launch_env
from megatron_hybridir.training.adapter_checkpoint import check_same_base, load_base_weights
from megatron_hybridir.training.checkpoint import (
    latest_step,
    load_checkpoint,
    remove_partial_saves,
    save_checkpoint,
)
from megatron_hybridir.training.engine import forward_backward, wrap_ddp
from megatron_hybridir.training.flops import peak_tflops, real_token_flops
from megatron_hybridir.training.gradcache import gradcache_forward_backward
from megatron_hybridir.training.metrics_log import BatchKindCounts, MetricsLog, SourceBatchCounts
from megatron_hybridir.training.run_config import check_resolved
from megatron_hybridir.training.run_identity import (check_data, check_run_id, prepare_run_dir,
                                                     run_id)
from megatron_hybridir.training.run_lock import hold_run_dir
from megatron_hybridir.data.synthetic import related_pairs

logger = logging.getLogger(__name__)


class TrainingError(RuntimeError):
    pass


@dataclass
class TrainResult:
    start_step: int = 0
    last_step: int = 0
    losses: list[float] = field(default_factory=list)
    preempted: bool = False
    stopped_early: bool = False


class BatchSource:
    """This rank's micro-batches for any step: the hybrid sampler over on-disk data, or synthetic."""

    def __init__(self, config: RunConfig, *, dp_rank: int, dp_size: int):
        self.config, self.dp_rank, self.dp_size = config, dp_rank, dp_size
        data = config.data
        fixed = config.seq_length if config.parallel.pipeline_model_parallel_size > 1 else None
        self.sampler = self.collate = self.last_source = None
        self.source_names: list[str] = []
        if data.path is not None:
            from megatron_hybridir.data.dataset import Collator, TokenizedDataset

            dataset = TokenizedDataset(data.path)
            self.sampler = dataset.sampler(data.sampler_config(seed=config.seed))
            self.source_names = [s["source"] for s in dataset.manifest["sources"]]
            self.collate = Collator(dataset, num_negatives=config.loss.num_hard_negatives,
                                    pad_to_multiple=data.pad_to_multiple, fixed_length=fixed)

    def micro_batches(self, step: int) -> list[Batch]:
        """This DP rank's micro-batches of ``step``, each carrying the step's batch kind (synthetic
        batches: monolingual), packed into token streams with ``data.packing``; with
        ``data.micro_batch_tokens``, the rank's whole share cut by that token budget."""
        data = self.config.data
        if data.micro_batch_tokens is None:
            micro = self._padded_micro_batches(step, pairs=data.micro_batch_size)
        else:
            # NOTE: the count of micro-batches may differ between DP ranks: under GradCache (which
            # the budget requires) nothing is exchanged over DP per micro-batch, only the loss's
            # all-gather of the whole local batch and the gradient reduction after the step.
            [local] = self._padded_micro_batches(step, pairs=data.global_batch_size // self.dp_size)
            micro = split_by_tokens(local, max_tokens=data.micro_batch_tokens)
        if not data.packing:
            return micro
        # GradCache's loss spans the whole batch, so pairs may be regrouped into equal streams.
        return pack_for_layout(micro, pad_to_multiple=data.pad_to_multiple,
                               parallel=self.config.parallel, token_budget=data.micro_batch_tokens,
                               balance=self.config.training.gradcache)

    def _padded_micro_batches(self, step: int, *, pairs: int) -> list[Batch]:
        data = self.config.data
        if self.sampler is not None:
            batch = self.sampler.global_batch(step).rank_slice(self.dp_rank, self.dp_size)
            self.last_source = batch.source
            micro = [self.collate(m) for m in batch.micro_batches(pairs)]
            self._check_ids(micro, step)
            return micro
        per_rank = data.global_batch_size // self.dp_size // pairs
        g = torch.Generator().manual_seed(self.config.seed * 1_000_003 + step)
        all_micro = [related_pairs(num_queries=pairs,
                                   num_negatives=self.config.loss.num_hard_negatives,
                                   seq_length=self.config.seq_length,
                                   vocab_size=self.config.model.vocab_size, generator=g)
                     for _ in range(per_rank * self.dp_size)]
        return all_micro[self.dp_rank::self.dp_size]

    def source_counts(self) -> Optional[SourceBatchCounts]:
        """Per-source batch counters when every batch has one source (``same_source_batches``)."""
        if self.sampler is None or self.sampler.same_source is None:
            return None
        return SourceBatchCounts(self.source_names)

    def _check_ids(self, micro: list[Batch], step: int) -> None:
        """Ids past the vocabulary would index nothing at TP=1 and read zero rows at TP > 1 (each
        rank masks ids outside its slice); the manifest is checked at start, this catches data
        whose files disagree with it."""
        vocab = self.config.model.vocab_size
        top = max(int(mb.input_ids.max()) for mb in micro)
        if top >= vocab:
            raise TrainingError(f"step {step + 1}: token id {top:,} in {self.config.data.path} is "
                                f"outside model.vocab_size {vocab:,}")


class _StopFlag:
    """Set by SIGTERM / SIGUSR1 (Slurm's pre-timeout signal); checked between steps."""

    def __init__(self):
        self.signal: Optional[int] = None
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        self.signal = signum

    def any_rank(self) -> bool:
        flag = torch.tensor([1.0 if self.signal is not None else 0.0], device=compute_device())
        if dist.is_initialized():
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())


def _step_stats(outputs: list[dict]) -> torch.Tensor:
    """[loss, accuracy, distillation term] averaged over DP (the term 0 when distillation is off),
    broadcast from the last pipeline stage to every rank."""
    stats = torch.zeros(3, dtype=torch.float64, device=compute_device())  # NCCL: GPU tensors
    if outputs:
        stats[0] = torch.stack([o["loss"] for o in outputs]).double().mean()
        stats[1] = torch.stack([o["accuracy"] for o in outputs]).double().mean()
        if "distillation" in outputs[0]:
            stats[2] = torch.stack([o["distillation"] for o in outputs]).double().mean()
        dist.all_reduce(stats, group=parallel_state.get_data_parallel_group())
        stats /= parallel_state.get_data_parallel_world_size()
    if parallel_state.get_pipeline_model_parallel_world_size() > 1:
        dist.broadcast(stats, src=parallel_state.get_pipeline_model_parallel_last_rank(),
                       group=parallel_state.get_pipeline_model_parallel_group())
    return stats


def _masked_negatives(outputs: list[dict]) -> int:
    """False-negative candidates masked this step, summed over micro-batches and DP ranks, sent
    from the last pipeline stage to every rank (rank 0 logs it)."""
    count = torch.zeros(1, dtype=torch.float64, device=compute_device())
    if outputs:
        count[0] = sum(float(o.get("masked", 0)) for o in outputs)
        dist.all_reduce(count, group=parallel_state.get_data_parallel_group())
    if parallel_state.get_pipeline_model_parallel_world_size() > 1:
        dist.broadcast(count, src=parallel_state.get_pipeline_model_parallel_last_rank(),
                       group=parallel_state.get_pipeline_model_parallel_group())
    return int(count.item())


def _throughput(config: RunConfig, micro: list[Batch], elapsed: float, *, dp_size: int,
                gpus: int) -> dict:
    """Pairs/s, tokens/s (processed, whole job), model TFLOP/s per GPU and MFU on known GPUs, and
    the padding fraction. FLOPs count real tokens only (``flops.real_token_flops``), so padding
    is never reported as useful work; DP ranks are assumed alike (this rank's counts x DP)."""
    lengths = torch.cat([mb.row_lengths() for mb in micro]).tolist()
    trim = config.parallel.pipeline_model_parallel_size == 1
    processed = sum(mb.processed_tokens(trim_segments=trim) for mb in micro)
    flops = real_token_flops(config.model, row_lengths=lengths,
                             gradcache=config.training.gradcache) * dp_size
    out = {"samples_per_s": config.data.global_batch_size / elapsed,
           "tokens_per_s": processed * dp_size / elapsed,
           "real_tokens_per_s": sum(lengths) * dp_size / elapsed,
           "padding_fraction": 1.0 - sum(lengths) / max(processed, 1),
           "tflops_per_gpu": flops / elapsed / gpus / 1e12}
    if torch.cuda.is_available():
        peak = peak_tflops(torch.cuda.get_device_name())
        if peak:
            out["mfu"] = out["tflops_per_gpu"] / peak
    return out


def build_training(config: RunConfig):
    """Model chunks (DDP), Megatron optimizer and LR scheduler for this rank."""
    chunks = build_model_chunks(config.model, config.parallel, precision=config.precision,
                                loss=config.loss)
    model = wrap_ddp(chunks, use_distributed_optimizer=config.optim.use_distributed_optimizer)
    o = config.optim
    optimizer = get_megatron_optimizer(OptimizerConfig(
        optimizer="adam", lr=o.lr, min_lr=o.min_lr, weight_decay=o.weight_decay,
        adam_beta1=o.adam_beta1, adam_beta2=o.adam_beta2, clip_grad=o.clip_grad,
        bf16=config.precision.dtype == "bf16", fp16=config.precision.dtype == "fp16",
        use_distributed_optimizer=o.use_distributed_optimizer), model)
    steps = config.training.train_steps
    scheduler = OptimizerParamScheduler(
        optimizer, init_lr=0.0 if o.warmup_steps else o.lr, max_lr=o.lr, min_lr=o.min_lr,
        lr_warmup_steps=o.warmup_steps, lr_decay_steps=max(steps, o.warmup_steps + 1),
        lr_decay_style="cosine", start_wd=o.weight_decay, end_wd=o.weight_decay,
        wd_incr_steps=steps, wd_incr_style="constant",
        # A relaunch's optim / train_steps values are honoured (run_identity.RELAUNCH_HONOURED);
        # only the step count comes from the checkpoint.
        override_opt_param_scheduler=True, use_checkpoint_opt_param_scheduler=False)
    return model, optimizer, scheduler


def _honour_optim(config: RunConfig, optimizer, scheduler) -> None:
    """This launch's lr / min_lr after a resume: the param groups restored from the checkpoint
    carry the saved ``max_lr`` / ``min_lr``, which Megatron's scheduler prefers to its own (a
    relaunch's changed optim values are honoured, see run_identity.RELAUNCH_HONOURED)."""
    for group in optimizer.param_groups:
        group["max_lr"], group["min_lr"] = config.optim.lr, config.optim.min_lr
    scheduler.step(increment=0)        # recompute this step's lr from them


class Trainer:
    """One run (or resumed run) of training on this rank; every rank builds one and calls ``run``.

    ``__init__`` checks the inputs and builds model, optimizer and data before any step; ``run``
    restores (``resume``) or warm-starts, then repeats ``step`` and ``maybe_save`` until the last
    step, an ``on_checkpoint`` stop, ``training.exit_interval``, or a preemption (``on_preempt``).
    """

    def __init__(self, config: RunConfig, *, on_checkpoint: Optional[Callable[[int], bool]] = None):
        # Before any process group or model exists: the launcher's world size and the inputs.
        validate(config, world_size=launch_env().world_size)
        validate_paths(config)
        check_initial_weights(config)   # a public architecture starts from its weights
        self.info = initialize(config.parallel, seed=config.seed)
        check_resolved(config)   # init_from: the model section is the checkpoint's (run_config)
        self.config = config
        manifest = check_data(config)       # vocabulary and tokenizer, before any model exists
        self.run_dir = Path(config.checkpoint.dir) if config.checkpoint.dir else None
        # One job per run directory, taken before anything in it is read (run_lock).
        self.lock = hold_run_dir(self.run_dir, rank=self.info.rank)
        self.on_checkpoint = on_checkpoint
        try:
            self._build(manifest)
        except BaseException:
            self.close()
            raise

    def _build(self, manifest) -> None:
        """Everything after the lock: run directory, model, optimizer, data."""
        config = self.config
        if self.lock is not None:
            remove_partial_saves(self.run_dir)   # a save that failed or was killed
        self.prepare_run_dir(manifest)
        self.model, self.optimizer, self.scheduler = build_training(config)
        self.source = BatchSource(config, dp_rank=self.info.dp_rank, dp_size=self.info.dp_size)
        self.result, self.kinds, self.skipped = TrainResult(), BatchKindCounts(), 0
        self.sources = self.source.source_counts()
        self.base_ref = self.lora_base_ref()
        self.step_fn = (gradcache_forward_backward if config.training.gradcache
                        else forward_backward)

    def close(self) -> None:
        """Release the run directory (the kernel also does when the process dies)."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def prepare_run_dir(self, manifest) -> None:
        """Relaunch identity checked (and config written) before anything else is written."""
        if self.run_dir is None:
            return
        latest = latest_step(self.run_dir)
        prepare_run_dir(self.run_dir, self.config, manifest, resuming=latest is not None,
                        write=self.info.rank == 0, start_step=latest or 0)

    def lora_base_ref(self) -> Optional[dict]:
        """LoRA: the frozen base always comes from init_from (adapter checkpoints do not hold it)."""
        if self.config.model.lora is None:
            return None
        return load_base_weights(self.config.checkpoint.init_from, model=self.model)

    def resume(self) -> None:
        """Model, optimizer, scheduler, step and batch counts from the run directory's latest
        checkpoint, if any; then a fresh run starts from ``init_from``'s weights, if given."""
        if self.run_dir is not None:
            resumed = load_checkpoint(self.run_dir, model=self.model, optimizer=self.optimizer,
                                      scheduler=self.scheduler)
            if resumed:
                check_run_id(self.run_dir, resumed["step"], resumed["extra"].get("run_id"))
                self.result.start_step = resumed["step"]
                self.kinds.restore(resumed["extra"].get("kinds", {}),
                                   where=f"{self.run_dir} step {resumed['step']}")
                if self.sources is not None:
                    self.sources.restore(resumed["extra"].get("sources", {}),
                                         where=f"{self.run_dir} step {resumed['step']}")
                _honour_optim(self.config, self.optimizer, self.scheduler)
                if self.base_ref is not None:
                    check_same_base(resumed["extra"].get("lora_base"), self.base_ref,
                                    where=self.run_dir)
        if self.result.start_step == 0 and self.config.checkpoint.init_from:
            if self.base_ref is None:
                load_model_weights(self.config.checkpoint.init_from, model=self.model)
            self.optimizer.reload_model_params()   # mixed precision keeps fp32 main copies

    def step(self, step: int) -> Optional[dict]:
        """Train step ``step`` (0-based): its metrics record, or None when a non-finite loss
        skipped the update."""
        start = time.perf_counter()
        micro = self.source.micro_batches(step)
        outputs = self.step_fn(self.model, micro, loss=self.config.loss)
        loss, acc, distillation = _step_stats(outputs).tolist()
        masked = _masked_negatives(outputs) if self.config.loss.mask_false_negatives else 0
        if not math.isfinite(loss):
            self._skip(step, loss)
            return None
        self.skipped = 0
        _, grad_norm, _ = self.optimizer.step()
        if torch.cuda.is_available():
            torch.cuda.synchronize()    # step time (and MFU) must include the queued GPU work
        elapsed = time.perf_counter() - start
        self.scheduler.step(increment=1)
        self.kinds.add(micro[0].kind)
        if self.sources is not None:
            self.sources.add(self.source.last_source)
        self.result.losses.append(loss)
        extra = {"distillation": distillation} if self.config.loss.distillation.weight > 0 else {}
        return {"step": step + 1, "loss": loss, "accuracy": acc, "masked_negatives": masked, **extra,
                "lr": self.scheduler.get_lr(self.optimizer.param_groups[0]),
                "grad_norm": grad_norm, "step_time": elapsed, **self.kinds.record(),
                **(self.sources.record() if self.sources is not None else {}),
                **_throughput(self.config, micro, elapsed, dp_size=self.info.dp_size,
                              gpus=self.info.world_size)}

    def _skip(self, step: int, loss: float) -> None:
        self.skipped += 1
        logger.warning("step %d: non-finite loss (%s), update skipped (%d in a row)", step + 1,
                       loss, self.skipped)
        if self.skipped > self.config.training.max_skipped_steps:
            raise TrainingError(f"{self.skipped} non-finite losses in a row at step {step + 1}; "
                                f"stopping (last good checkpoint kept)")

    def maybe_save(self, step: int, *, force: bool) -> bool:
        """Checkpoint after ``step`` steps when forced, at the last step or at the save interval;
        True when the ``on_checkpoint`` hook then asks to stop."""
        interval, total = self.config.checkpoint.save_interval, self.config.training.train_steps
        if self.run_dir is None or not (force or step == total or (interval and step % interval == 0)):
            return False
        extra = {"kinds": self.kinds.state(), "run_id": run_id(self.run_dir),
                 **({"sources": self.sources.state()} if self.sources is not None else {}),
                 **({"lora_base": self.base_ref} if self.base_ref else {})}
        save_checkpoint(self.run_dir, step, model=self.model, optimizer=self.optimizer,
                        scheduler=self.scheduler, extra=extra,
                        keep_last=self.config.checkpoint.keep_last)
        return self.on_checkpoint is not None and bool(self.on_checkpoint(step))

    def on_preempt(self, step: int) -> None:
        """After the preemption checkpoint: leave the requeue marker and say so (rank 0)."""
        if self.info.rank == 0 and self.run_dir is not None:
            # slurm/launch.sh requeues the job when it finds this marker.
            (self.run_dir / "requeue").write_text(f"{step}\n")
        if self.info.rank == 0:
            print(f"preemption signal (SIGTERM/SIGUSR1) received: saved step {step}, "
                  f"exiting for requeue", flush=True)
        self.result.preempted = True

    def _after_step(self, step: int, stop: _StopFlag) -> bool:
        """Save / stop decisions after a trained step; True ends the run."""
        preempted = stop.any_rank()
        exit_now = bool(self.config.training.exit_interval) and (
            step - self.result.start_step >= self.config.training.exit_interval)
        if self.maybe_save(step, force=preempted or exit_now):
            self.result.stopped_early = step < self.config.training.train_steps
            return True
        if preempted:
            self.on_preempt(step)
        return preempted or exit_now

    def run(self) -> TrainResult:
        self.resume()
        stop, total = _StopFlag(), self.config.training.train_steps
        if self.result.start_step > total:
            # A relaunch that would train nothing and say nothing: the run is already past the
            # asked length (a typo in train_steps, or another run's folder).
            raise ConfigError(f"training.train_steps: {total}, but {self.run_dir} resumes from "
                              f"step {self.result.start_step}, which is past it; ask for more steps "
                              f"or use another checkpoint.dir")
        if self.result.start_step == total and total > 0:
            logger.info("already trained to step %d (training.train_steps): nothing to do", total)
        metrics = MetricsLog(self.run_dir, enabled=self.info.rank == 0, total_steps=total,
                             start_step=self.result.start_step,
                             log_interval=self.config.training.log_interval)
        step = self.result.start_step
        while step < total:
            record = self.step(step)
            step += 1
            if record is None:
                continue
            metrics.write(record)
            if self._after_step(step, stop):
                break
        self.result.last_step = step
        if self.run_dir is not None and self.info.rank == 0 and not self.result.preempted:
            (self.run_dir / "requeue").unlink(missing_ok=True)
        metrics.close()
        return self.result


def train(config: RunConfig, *, on_checkpoint: Optional[Callable[[int], bool]] = None) -> TrainResult:
    """Run (or resume) training as configured; every rank calls this.

    ``on_checkpoint(step)`` runs on every rank after each saved checkpoint; it returning True on
    every rank ends training there (early stopping in ``study.budget``: a dev evaluation). Ranks must
    agree, as in a single-process run, or the caller must all-reduce the decision itself."""
    trainer = Trainer(config, on_checkpoint=on_checkpoint)
    try:
        return trainer.run()
    finally:
        trainer.close()
