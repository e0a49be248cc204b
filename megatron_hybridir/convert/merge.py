"""Merge two or more checkpoints of one architecture into one: a weighted average (``linear``) or,
for exactly two, spherical interpolation (``slerp``).

Why it exists: averaging fine-tuned retrievers (model soups, a run's last checkpoints, runs on
different data mixes) is a cheap way to a better one, and it must not silently average models that
are not the same architecture, or were trained with other tokenizers. Inputs are anything
``checkpointing/folders.resolve_checkpoint`` names (run directories, ``step_N`` folders, converted
folders), saved at any TP / PP layout: each tensor is read whole (PyTorch DCP reassembles the
shards, as export does). LoRA runs are read through their merged weights (``lora_merge``).

Per tensor (``x_k`` the inputs' tensors, ``w`` the normalised weights, arithmetic in float64, cast
to the output dtype once at the end):

- ``linear``: ``sum_k w_k x_k``, accumulated in input order.
- ``slerp`` (two inputs, ``t`` = the second input's normalised weight): the tensors are flattened
  to vectors a, b; with ``cos = <a, b> / (|a| |b|)`` and ``omega = arccos(cos)``, the result is
  ``sin((1 - t) omega) / sin(omega) a + sin(t omega) / sin(omega) b`` (the unnormalised vectors with
  the coefficients of their directions' great-circle interpolation, as mergekit does). When the
  vectors are nearly parallel or antiparallel (``|cos| > SLERP_PARALLEL``, angle under ~1.8 degrees
  from either) or one is zero, ``sin(omega)`` is too small to divide by and the result is the linear
  ``(1 - t) a + t b`` (which slerp tends to there anyway). LayerNorm weights near 1 take this path.

Streaming and memory: the output is written tensor by tensor (``streamed_save``: a meta-device
skeleton supplies Megatron's keys, each tensor — each layer's slice of a stacked layer tensor — is
produced when the writer asks for it). Producing one reads it from one input at a time into a
float64 accumulator, so peak memory is one input's copy of the largest single tensor plus two
float64 copies of it (the accumulator and the weighted term; slerp holds both inputs in float64
instead): about 9x that tensor's stored size in bf16, 5x in fp32, however many inputs and layers
there are — never N models. (A LoRA input adds its adapter pair and a float32 merge of the weight.)

The output is a converted-checkpoint folder (``model.yaml``, ``checkpoint/``, ``tokenizer/``,
``provenance.json`` with a ``merge`` entry recording the inputs and weights), which
``checkpoint.init_from``, ``tools/export_to_hf.py`` and evaluation take like an imported model. Its
embedding table is padded for ``tensor_parallel`` (as the importer's is); rows an input pads
differently are cut to the common rows and the padding rows above them are zero.

What it does not do: merge optimizer state (the output starts runs, it does not resume one), align
models of different architectures (TIES / DARE-style sign resolution is not implemented).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
import yaml

from megatron_hybridir.checkpointing import provenance
from megatron_hybridir.checkpointing.folders import resolve_checkpoint
from megatron_hybridir.config import ModelConfig, ParallelConfig, PrecisionConfig
from megatron_hybridir.convert.checkpoint_reader import CheckpointReader, checkpoint_keys
from megatron_hybridir.convert.hf_import import check_parallel
from megatron_hybridir.convert.io import atomic_folder
from megatron_hybridir.convert.lora_merge import adapter_base, open_checkpoint
from megatron_hybridir.convert.mappings import ConversionError
from megatron_hybridir.convert.streamed_save import save_streamed

log = logging.getLogger(__name__)

METHODS = ("linear", "slerp")
# Model fields that do not change what the weights mean (regularisation, kernels, the padding
# multiple, the preset's name) or that the merge removes (LoRA: inputs are read merged). The
# output takes the first input's values; every other field must agree.
IGNORED_FIELDS = ("preset", "lora", "make_vocab_size_divisible_by", "hidden_dropout",
                  "attention_dropout", "init_method_std", "recompute", "use_transformer_engine")
# |cos| above this: slerp falls back to linear (mergekit's DOT_THRESHOLD; sin(omega) < 0.032).
SLERP_PARALLEL = 0.9995
DTYPES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


@dataclass
class MergeInput:
    """One checkpoint to merge: what the path names (``resolve_checkpoint``)."""

    path: Path
    model: ModelConfig
    ckpt: Path
    info: dict


def normalise_weights(weights: Optional[Sequence[float]], count: int) -> list[float]:
    """Weights that sum to 1 (equal when None); finite, non-negative, not all zero, one per input."""
    if weights is None:
        return [1.0 / count] * count
    weights = [float(w) for w in weights]
    if len(weights) != count:
        raise ConversionError(f"--weights: {len(weights)} weights for {count} checkpoints; give one "
                              f"per checkpoint")
    bad = [w for w in weights if not math.isfinite(w) or w < 0]
    if bad:
        raise ConversionError(f"--weights {weights}: {bad} not a finite non-negative number")
    total = math.fsum(weights)
    if total == 0:
        raise ConversionError(f"--weights {weights}: all zero; at least one must be positive")
    if abs(total - 1) > 1e-9:
        log.info("weights %s sum to %s; normalised to sum 1", weights, total)
    return [w / total for w in weights]


def check_same_architecture(inputs: Sequence[MergeInput]) -> None:
    """Refuse inputs whose model sections differ outside ``IGNORED_FIELDS``, naming every field."""
    first = dataclasses.asdict(inputs[0].model)
    for other in inputs[1:]:
        theirs = dataclasses.asdict(other.model)
        diff = {k: (first[k], theirs[k]) for k in first
                if k not in IGNORED_FIELDS and first[k] != theirs[k]}
        if diff:
            fields = ", ".join(f"model.{k}: {a!r} vs {b!r}" for k, (a, b) in diff.items())
            raise ConversionError(f"{inputs[0].path} and {other.path} are not the same "
                                  f"architecture ({fields}); only checkpoints of one "
                                  f"architecture can be merged")


def tokenizer_hash(item: MergeInput) -> Optional[str]:
    """The tokenizer hash the input's provenance records (its tokenizer copy's, else its data's)."""
    record = item.info.get("provenance") or {}
    return ((record.get("tokenizer") or {}).get("hash")
            or (record.get("data") or {}).get("tokenizer_hash"))


def check_same_tokenizer(inputs: Sequence[MergeInput]) -> None:
    """Refuse inputs whose recorded tokenizer hashes differ; warn for inputs that record none."""
    known = [(item, tokenizer_hash(item)) for item in inputs]
    unknown = [str(item.path) for item, h in known if h is None]
    if unknown:
        log.warning("no tokenizer recorded in %s: cannot check that the tokenizers match", unknown)
    known = [(item, h) for item, h in known if h is not None]
    for item, h in known[1:]:
        if h != known[0][1]:
            raise ConversionError(f"{known[0][0].path} (tokenizer hash {known[0][1]}) and "
                                  f"{item.path} (tokenizer hash {h}) were trained with different "
                                  f"tokenizers; refusing to merge")


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation of two same-shape tensors as flat vectors, in float64 (see the module
    docstring); linear when they are nearly (anti)parallel or one is zero."""
    a, b = a.double(), b.double()
    norms = a.norm() * b.norm()
    cos = float((a.flatten() @ b.flatten()) / norms) if norms > 0 else 1.0
    if abs(cos) > SLERP_PARALLEL:
        return (1 - t) * a + t * b
    omega = math.acos(cos)
    return (math.sin((1 - t) * omega) / math.sin(omega)) * a + (math.sin(t * omega) / math.sin(omega)) * b


def resolve_inputs(paths: Sequence[str | Path]) -> list[MergeInput]:
    """The inputs, checked to be one architecture and one tokenizer."""
    if len(paths) < 2:
        raise ConversionError(f"merge needs at least two checkpoints, got {len(paths)}")
    inputs = [MergeInput(Path(p), *resolve_checkpoint(p)) for p in paths]
    check_same_architecture(inputs)
    check_same_tokenizer(inputs)
    return inputs


def _stored_dtype(inputs: Sequence[MergeInput], key: str) -> str:
    """The dtype the inputs store the word embeddings (checkpoint ``key``) in when they agree (a
    LoRA run's are its base's), else fp32."""
    found = set()
    for item in inputs:
        ckpt = item.ckpt if item.model.lora is None else Path(adapter_base(item.ckpt)["checkpoint"])
        found.add(CheckpointReader(ckpt).metadata[key].properties.dtype)
    return DTYPES.get(found.pop(), "fp32") if len(found) == 1 else "fp32"


def _combine(readers: list[Callable[[str], torch.Tensor]], inputs: Sequence[MergeInput],
             weights: list[float], method: str, name: str, shape: torch.Size) -> torch.Tensor:
    """The merged float64 tensor ``name`` of the target ``shape`` (vocabulary rows: see
    :func:`_fit`)."""
    if method == "slerp":
        a, b = (_fit(read(name), shape, name, item) for read, item in zip(readers, inputs))
        out = slerp(a, b, weights[1])
    else:
        out = None
        for read, item, w in zip(readers, inputs, weights):
            term = w * _fit(read(name), shape, name, item).double()
            out = term if out is None else out.add_(term)
    if not torch.isfinite(out).all():
        raise ConversionError(f"merged tensor {name} is not finite (an input holds inf / nan: "
                              f"{[str(i.path) for i in inputs]})")
    return out


def _fit(tensor: torch.Tensor, shape: torch.Size, name: str, item: MergeInput) -> torch.Tensor:
    """An input tensor at the output's shape: the word embeddings of another vocabulary padding
    keep their first rows (all real rows: every input has at least ``vocab_size``), zero above."""
    if tensor.shape == shape:
        return tensor
    if name == "embedding.word_embeddings.weight" and tensor.shape[1:] == shape[1:]:
        rows = min(tensor.shape[0], shape[0])
        out = torch.zeros(shape, dtype=tensor.dtype)
        out[:rows] = tensor[:rows]
        return out
    raise ConversionError(f"{item.path}: tensor {name} has shape {tuple(tensor.shape)}, expected "
                          f"{tuple(shape)}")


def merge_checkpoints(paths: Sequence[str | Path], output: str | Path, *, method: str = "linear",
                      weights: Optional[Sequence[float]] = None, tensor_parallel: int = 1,
                      dtype: Optional[str] = None, overwrite: bool = False) -> Path:
    """Merge the checkpoints ``paths`` into the converted-checkpoint folder ``output``.

    ``weights``: one per input (default equal), normalised to sum 1; for ``slerp`` (exactly two
    inputs) the second's normalised weight is ``t``. ``tensor_parallel``: the run layout the
    output's vocabulary padding is for. ``dtype``: fp32 / bf16 / fp16 (default: the inputs' own
    when they agree, else fp32)."""
    from megatron_hybridir.model.builder import build_model, padded_vocab_size
    from megatron_hybridir.runtime.distributed import ensure_runtime

    if method not in METHODS:
        raise ConversionError(f"--method {method!r}: expected one of {list(METHODS)}")
    if method == "slerp" and len(paths) != 2:
        raise ConversionError(f"--method slerp merges exactly two checkpoints, got {len(paths)}; "
                              f"use --method linear for more")
    weights = normalise_weights(weights, len(paths))
    inputs = resolve_inputs(paths)
    ensure_runtime()
    model = dataclasses.replace(inputs[0].model, lora=None)
    check_parallel(model, tensor_parallel, 1, str(output))
    rows = padded_vocab_size(model.vocab_size, divisible_by=model.make_vocab_size_divisible_by,
                             tp=tensor_parallel)
    dtype = dtype or _stored_dtype(inputs, checkpoint_keys(model)["embedding.word_embeddings.weight"])
    with torch.device("meta"):
        skeleton = build_model(model, ParallelConfig(), precision=PrecisionConfig(dtype=dtype),
                               vocab_rows=rows)
    shapes = {name: value.shape for name, value in skeleton.state_dict().items()
              if isinstance(value, torch.Tensor)}
    readers = [open_checkpoint(item.model, item.ckpt).read for item in inputs]

    out_dtype = {v: k for k, v in DTYPES.items()}[dtype]

    def materialize(name: str) -> torch.Tensor:      # cast here: the writer keeps what it gets
        return _combine(readers, inputs, weights, method, name, shapes[name]).to(out_dtype)

    with atomic_folder(Path(output), overwrite, kind="converted checkpoint") as tmp:
        (tmp / "model.yaml").write_text(yaml.safe_dump(dataclasses.asdict(model), sort_keys=False))
        record = _provenance(inputs, weights, method, tmp)
        record.update(dtype=dtype, tensor_parallel=tensor_parallel, pipeline_parallel=1)
        provenance.write(tmp, record)
        save_streamed(skeleton.sharded_state_dict(), tmp / "checkpoint", materialize)
    log.info("merged %d checkpoints (%s, weights %s) -> %s", len(inputs), method, weights, output)
    return Path(output)


def _provenance(inputs: Sequence[MergeInput], weights: list[float], method: str, out: Path) -> dict:
    """The first input's record (family, HF source, sentence-transformers pipeline, training data
    prompts), its tokenizer copied into ``out/tokenizer``, and the merge itself."""
    first = inputs[0].info.get("provenance") or {}
    prompts = {str(i.path): provenance.data_prompts(i.info.get("provenance")) for i in inputs}
    if len({repr(p) for p in prompts.values()}) > 1:
        log.warning("the inputs were trained with different prompts %s; the merged model (and its "
                    "export) records the first input's", prompts)
    record = {"format": provenance.FORMAT, "family": first.get("family"), "hf": first.get("hf"),
              "sentence_transformers": first.get("sentence_transformers"), "tokenizer": None,
              "data": first.get("data")}
    for item in inputs:                       # the first input that has a tokenizer to copy
        folder = provenance.tokenizer_folder(item.info["folder"], item.info.get("provenance"))
        if folder is not None and Path(folder).is_dir():
            record["tokenizer"] = provenance.copy_tokenizer(Path(folder), out / "tokenizer")
            break
    record["merge"] = {"method": method, "inputs": [
        {"path": str(i.path.resolve()), "checkpoint": str(Path(i.ckpt).resolve()), "weight": w}
        for i, w in zip(inputs, weights)]}
    return record
