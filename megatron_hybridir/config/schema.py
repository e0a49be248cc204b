"""The config schema: one dataclass per section of a run, one field per knob.

Why it exists: a run is fully described by a YAML file plus ``a.b=value`` overrides, so every knob
is a typed field here with a docstring (the string literal under it), which
``python -m megatron_hybridir.train --help`` prints (``config/help.py`` reads them from this file).
Option fields are ``Literal`` types, so the loader rejects a misspelt choice naming the field, and
the choices have one home.

Derived values that several modules need (key/value heads, per-head size, the embedding size, the
sampler's settings) are properties or methods here, so the expression is written once.

What it does not do: read files (``config/loading.py``), check cross-field constraints
(``config/validation.py``) or build anything (``model/builder.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Optional, get_args

from megatron_hybridir.config.ranges import Bounds

from megatron_hybridir.data.sampler import LanguageChoice, SamplerConfig, SamplerMode


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the field."""


LayerKind = Literal["llama", "bert"]
Attention = Literal["bidirectional", "causal"]
Recompute = Literal["none", "full", "selective"]
LoraTarget = Literal["qkv", "proj", "fc1", "fc2"]
Dtype = Literal["fp32", "bf16", "fp16"]
Fp8Format = Literal["hybrid", "e4m3"]
Fp8Recipe = Literal["delayed", "tensorwise", "blockwise", "mxfp8"]
InitSource = Literal["pretrained", "random"]

LORA_TARGETS: tuple[str, ...] = get_args(LoraTarget)
MATRYOSHKA_FULL = "full"     # a loss.matryoshka_dims entry: the whole embedding


@dataclass
class LoraConfig:
    """LoRA adapters on the transformer's parallel linears (``model/lora.py``); the base is frozen."""

    rank: Annotated[int, Bounds(1, optional=True)] = 16
    """Rank of each adapter's low-rank update (A: rank x in, B: out x rank)."""
    alpha: Annotated[float, Bounds(0, low_open=True, optional=True)] = 32.0
    """The update is scaled by alpha / rank."""
    dropout: Annotated[float, Bounds(0, 1, high_open=True, optional=True)] = 0.0
    """Dropout on the adapter's input (PEFT's lora_dropout)."""
    target_modules: list[LoraTarget] = field(default_factory=lambda: list(LORA_TARGETS))
    """Any of qkv (attention input projection), proj (attention output), fc1, fc2."""
    train_head: bool = True
    """Also train the pooling head's parameters (projection, pooler, latent attention, learnable
    temperature), which a base checkpoint may not have; nothing else of the base trains."""


@dataclass
class ModelConfig:
    """Architecture of the embedding model: an LLM turned encoder (Llama / Mistral / Qwen family)
    or a BERT-style encoder (BERT, XLM-R, LaBSE)."""

    preset: Optional[str] = None
    """Name of a preset (``config/presets.py``; sizes kept per family in ``model/families.py``,
    e.g. ``tiny``, ``mistral-7b``); explicit fields override it."""
    layer_kind: LayerKind = "llama"
    """``llama``: pre-RMSNorm, SwiGLU, RoPE, no biases (Llama / Mistral / Qwen). ``bert``: post-
    LayerNorm, GELU, biases, learned absolute positions and token types, embedding LayerNorm
    (BERT / RoBERTa / XLM-R / LaBSE; see ``model/encoder_layers.py``)."""
    family: Optional[str] = None
    """Model family in ``model/families.py`` (llama, llama3, mistral, qwen2, qwen3, xlm-roberta,
    bert): recorded on import and by presets so export writes the family the weights came from.
    None: a model built from scratch (exported as its layer kind's base family)."""
    num_layers: Annotated[int, Bounds(1)] = 2
    """Transformer layers (divisible by the pipeline stages x virtual stages)."""
    hidden_size: Annotated[int, Bounds(1)] = 64
    """Width of the residual stream."""
    ffn_hidden_size: Annotated[int, Bounds(1)] = 128
    """Width of the MLP's inner layer (per gate for SwiGLU)."""
    num_attention_heads: Annotated[int, Bounds(1)] = 4
    """Query heads (hidden_size and the tensor-parallel size must divide by it / into it)."""
    num_query_groups: Annotated[Optional[int], Bounds(1, optional=True)] = None
    """Grouped-query attention: number of key/value heads (None = multi-head attention)."""
    kv_channels: Annotated[Optional[int], Bounds(1, optional=True)] = None
    """Per-head dimension (None = hidden_size / num_attention_heads; Qwen3 sets it explicitly)."""
    vocab_size: Annotated[int, Bounds(1)] = 256
    """Tokenizer vocabulary (the embedding table is padded above it, see the next field)."""
    make_vocab_size_divisible_by: Annotated[int, Bounds(1)] = 128
    """The embedding table is padded to a multiple of this times TP (Megatron convention)."""
    max_position_embeddings: Annotated[int, Bounds(1)] = 512
    """Longest sequence the model accepts (RoPE has no table, but inputs are checked against it)."""
    rotary_base: Annotated[float, Bounds(0, low_open=True)] = 10000.0
    """RoPE base frequency (theta)."""
    rope_scaling_factor: Annotated[Optional[float],
                                   Bounds(0, low_open=True, optional=True)] = None
    """Llama-3 style RoPE frequency scaling; None disables it."""
    qk_layernorm: bool = False
    """RMSNorm on queries and keys per head (Qwen3)."""
    add_qkv_bias: bool = False
    """Bias on the QKV projection only (Qwen2)."""
    layernorm_epsilon: Annotated[float, Bounds(0, low_open=True)] = 1e-5
    """Epsilon of every RMSNorm / LayerNorm."""
    type_vocab_size: Annotated[int, Bounds(0)] = 0
    """``bert``: rows of the token-type table (2 for BERT / LaBSE, 1 for XLM-R); type 0 is used."""
    position_offset: Annotated[int, Bounds(0)] = 0
    """``bert``: first position id (RoBERTa / XLM-R start at padding_idx + 1 = 2, BERT at 0); the
    position table has ``max_position_embeddings`` rows, so inputs may be that minus this long."""
    init_method_std: Annotated[float, Bounds(0)] = 0.02
    """Standard deviation of the normal initialisation of weights trained from scratch."""
    hidden_dropout: Annotated[float, Bounds(0, 1, high_open=True)] = 0.0
    """Dropout on the residual stream (after attention and MLP)."""
    attention_dropout: Annotated[float, Bounds(0, 1, high_open=True)] = 0.0
    """Dropout on the attention probabilities."""
    attention: Attention = "bidirectional"
    """``bidirectional`` (padding mask only) or ``causal`` (the LLM's original mask)."""
    pooling: str = "mean"
    """How token states become one vector: mean, last, first or latent_attention."""
    latent_num_latents: Annotated[int, Bounds(1)] = 512
    """Latent-attention pooling (NV-Embed): size of the trainable latent dictionary."""
    latent_num_heads: Annotated[int, Bounds(1)] = 8
    """Latent-attention pooling: attention heads (hidden_size must divide by it)."""
    pooler: bool = False
    """BERT's pooler after pooling: dense (hidden -> hidden, with bias) + tanh (LaBSE uses it on
    the CLS vector before normalisation)."""
    projection_dim: Annotated[Optional[int], Bounds(1, optional=True)] = None
    """Optional linear projection of the pooled vector to a smaller dimension."""
    normalize: bool = True
    """L2-normalise embeddings, making dot products cosine similarities."""
    use_transformer_engine: bool = False
    """Use Transformer Engine layers when importable (required for fp8); local layers otherwise."""
    recompute: Recompute = "none"
    """Activation recomputation: none, full (every layer re-run in backward) or selective (attention
    core only; needs Transformer Engine)."""
    lora: Optional[LoraConfig] = None
    """Train LoRA adapters on a frozen base (``checkpoint.init_from``) instead of every weight."""

    @property
    def kv_heads(self) -> int:
        """Key/value heads: the query groups, or one per attention head without GQA."""
        return self.num_query_groups or self.num_attention_heads

    @property
    def head_dim(self) -> int:
        """Per-head size of queries, keys and values."""
        return self.kv_channels or self.hidden_size // self.num_attention_heads

    @property
    def embedding_dim(self) -> int:
        """Size of the model's output embedding (after the optional projection)."""
        return self.projection_dim or self.hidden_size


def embedding_dim(model: ModelConfig) -> int:
    """Size of the model's output embedding (``ModelConfig.embedding_dim``, as a function)."""
    return model.embedding_dim


@dataclass
class ParallelConfig:
    """How the model is split across processes; data parallelism is what is left of the world."""

    tensor_model_parallel_size: Annotated[int, Bounds(1)] = 1
    """Tensor-parallel ranks: each layer's weights are split across them."""
    pipeline_model_parallel_size: Annotated[int, Bounds(1)] = 1
    """Pipeline stages: the layers are split across them."""
    virtual_pipeline_model_parallel_size: Annotated[
        Optional[int],
        Bounds(2, optional=True, text="needs pipeline_model_parallel_size >= 2 and a value >= 2")] = None
    """Model chunks per pipeline rank (interleaved 1F1B schedule); None disables it."""
    sequence_parallel: bool = False
    """Split LayerNorm / dropout activations along the sequence across TP ranks (needs TP > 1)."""


DistillationKind = Literal["kl", "margin_mse"]


@dataclass
class DistillationConfig:
    """Distillation from teacher scores that the training records carry for the positive and each
    hard negative (``distillation.py``); in-batch negatives stay contrastive."""

    weight: Annotated[float, Bounds(0)] = 0.0
    """Weight of the distillation term added to InfoNCE; 0 turns it off (and needs no scores)."""
    kind: DistillationKind = "kl"
    """kl: KL(teacher || student) of the softmax over (positive + hard negatives); margin_mse: mean
    squared error between the student's and the teacher's (positive - negative) margins."""
    temperature: Annotated[float, Bounds(0, low_open=True)] = 0.05
    """The student's cosine scores are divided by this before the softmax (or the margins)."""
    teacher_temperature: Annotated[float, Bounds(0, low_open=True)] = 1.0
    """The teacher's scores are divided by this (cross-encoder logits often want T > 1)."""


@dataclass
class LossConfig:
    """InfoNCE over cosine similarities with in-batch negatives spanning the global batch."""

    temperature: Annotated[float, Bounds(0, low_open=True)] = 0.02
    """Softmax temperature of InfoNCE (logits are cosine / temperature)."""
    learnable_temperature: bool = False
    """Learn log(1/temperature), initialised from ``temperature``."""
    symmetric: bool = False
    """Add the passage-to-query InfoNCE term."""
    num_hard_negatives: Annotated[int, Bounds(0)] = 1
    """Hard negatives per query taken from each training item (0 disables them)."""
    mask_false_negatives: bool = True
    """Mask (logit -inf) in-batch and hard-negative candidates whose content id (hash of the
    normalised text, from preprocessing) equals the query's positive's; data without content ids
    (older preprocessed folders, synthetic batches) train unmasked. Counted as masked_negatives."""
    false_negative_margin: Annotated[
        Optional[float],
        Bounds(-2, 2, optional=True, text="must be a finite cosine-score margin in [-2, 2]")] = None
    """Also mask candidates whose cosine score exceeds the positive's score + this margin."""
    matryoshka_dims: Optional[list[Any]] = None
    """Matryoshka: embedding prefixes trained together, increasing, e.g. [64, 128, 256, full]
    (``full`` = the whole embedding); the loss is the weighted sum of InfoNCE over each prefix,
    renormalised (``matryoshka.py``). None trains the full embedding only."""
    matryoshka_weights: Annotated[Optional[list[float]], Bounds(0, optional=True)] = None
    """One weight per entry of matryoshka_dims (default: all 1)."""

    distillation: DistillationConfig = field(default_factory=DistillationConfig)
    """Distillation from teacher scores of the positive and hard negatives (off by default)."""

    def resolved_matryoshka_dims(self, full: int) -> Optional[list]:
        """``matryoshka_dims`` with ``full`` replaced by the embedding size ``full`` (other entries
        as written; validation checks them). The one place that spells ``full``."""
        if self.matryoshka_dims is None:
            return None
        return [full if d == MATRYOSHKA_FULL else d for d in self.matryoshka_dims]


@dataclass
class PrecisionConfig:
    """Numeric formats for parameters and compute."""

    dtype: Dtype = "fp32"
    """fp32, bf16 or fp16 for parameters and activations."""
    fp8: Optional[Fp8Format] = None
    """fp8 format through Transformer Engine (``hybrid`` or ``e4m3``); needs a Hopper GPU and TE."""
    fp8_recipe: Fp8Recipe = "delayed"
    """Transformer Engine scaling recipe: delayed, tensorwise, blockwise or mxfp8 (Blackwell)."""


@dataclass
class DataConfig:
    """Training data and the hybrid sampler (``data/sampler.py``, which owns the sampler fields'
    rules: ``sampler_config`` hands them over and ``check_settings`` validates them)."""

    path: Optional[str] = None
    """Folder written by tools/preprocess_data.py; None trains on synthetic pairs (smoke runs)."""
    mode: SamplerMode = "hybrid"
    """monolingual, cross-lingual, hybrid or mixed (see data/sampler.py)."""
    alpha: float = 0.5
    """Probability of a monolingual global batch in hybrid mode (the paper's grid optimum)."""
    language_choice: LanguageChoice = "batch"
    """``batch``: one language per monolingual batch (the paper's rule); ``example``: per pair."""
    language_temperature: float = 0.0
    """0: batch languages uniform; T > 0: weights proportional to pairs_per_language**(1/T)."""
    source_weights: Optional[list[float]] = None
    """Relative share of each source per epoch (None: proportional to size, the paper's rule)."""
    same_source_batches: bool = False
    """Draw every global batch from one source, so in-batch negatives come from the query's own
    source (another source's are trivially easy): sources are drawn in proportion to their size
    (or ``source_weights``) among those that can fill the batch kind drawn first (monolingual-only
    sources fill only monolingual batches); per-source counts go to metrics.jsonl
    (``data/source_batches.py``). false: sources mix within a batch."""
    global_batch_size: Annotated[int, Bounds(1)] = 16
    """Queries per optimizer step over all data-parallel ranks (the in-batch negatives' pool)."""
    micro_batch_size: Annotated[int, Bounds(1)] = 4
    """Queries per micro-batch on one data-parallel rank."""
    pad_to_multiple: Annotated[int, Bounds(1)] = 8
    """Sequences are padded to a multiple of this length."""
    packing: bool = False
    """Concatenate the rows of each micro-batch into one token stream with per-row boundaries
    (``data/packing.py``): no padding inside the stream, same embeddings; under pipeline
    parallelism the step's micro-batches share the longest one's length, and with
    ``training.gradcache`` a rank's pairs are first regrouped into near-equal streams."""
    micro_batch_tokens: Annotated[Optional[int], Bounds(1, optional=True)] = None
    """Cut each rank's share of the global batch into micro-batches of whole pairs holding at most
    this many real tokens (greedy, in the sampler's order) instead of ``micro_batch_size`` pairs;
    needs ``data.packing`` and ``training.gradcache`` (the loss spans the whole global batch, so
    the split changes nothing but the work). Under pipeline parallelism the pairs go into as few
    near-equal streams as hold them within the budget, all padded to the step's longest (at
    most this length, rounded up to the padding multiple)."""

    def sampler_config(self, *, seed: int) -> SamplerConfig:
        """The hybrid sampler's settings for this data section (validated on construction)."""
        return SamplerConfig(
            mode=self.mode, alpha=self.alpha, language_choice=self.language_choice,
            language_temperature=self.language_temperature,
            source_weights=tuple(self.source_weights) if self.source_weights else None,
            same_source_batches=self.same_source_batches,
            global_batch_size=self.global_batch_size, seed=seed)


@dataclass
class OptimConfig:
    """Megatron-Core optimizer (Adam) and the warmup + cosine schedule."""

    lr: Annotated[float, Bounds(0, low_open=True)] = 1e-4
    """Peak learning rate (reached after warmup_steps)."""
    min_lr: Annotated[float, Bounds(0)] = 0.0
    """Learning rate at the end of the cosine decay."""
    weight_decay: Annotated[float, Bounds(0)] = 0.01
    """Decoupled (AdamW) weight decay."""
    adam_beta1: Annotated[float, Bounds(0, 1, high_open=True)] = 0.9
    """Adam's first-moment decay."""
    adam_beta2: Annotated[float, Bounds(0, 1, high_open=True)] = 0.999
    """Adam's second-moment decay."""
    clip_grad: Annotated[float, Bounds(0)] = 1.0
    """Clip the global gradient norm to this (0 disables clipping)."""
    warmup_steps: Annotated[int, Bounds(0)] = 0
    """Linear warmup steps before the cosine decay."""
    use_distributed_optimizer: bool = False
    """Shard optimizer state across data-parallel ranks (Megatron's distributed optimizer)."""


@dataclass
class TrainingConfig:
    """The training loop: length, negatives, logging and stopping."""

    train_steps: Annotated[int, Bounds(1)] = 100
    """Optimizer steps of the whole run (a resumed run continues up to it)."""
    gradcache: bool = False
    """Negatives over the whole global batch whatever the micro-batch size (training/gradcache.py)."""
    max_skipped_steps: Annotated[int, Bounds(0)] = 5
    """Non-finite losses skip the step up to this many times in a row, then training stops."""
    log_interval: Annotated[int, Bounds(1)] = 10
    """Log metrics every N steps."""
    exit_interval: Annotated[int, Bounds(0)] = 0
    """Save and exit after this many steps of this invocation (0: run to train_steps)."""


@dataclass
class CheckpointConfig:
    """Where and how often a run saves, and which weights it starts from."""

    dir: Optional[str] = None
    """Run directory for checkpoints and logs; None disables saving."""
    save_interval: Annotated[int, Bounds(0)] = 0
    """Save every N steps (0: only at the end and on SIGTERM / SIGUSR1)."""
    keep_last: Annotated[int, Bounds(1)] = 2
    """Checkpoints kept in the run directory (older ones are deleted after a save)."""
    init_from: Optional[str] = None
    """Start a new run from these model weights (a folder from tools/convert_hf_to_megatron.py, or
    another run); ignored when the run directory already has a checkpoint to resume. The whole
    model section is taken from it; the config may change only the head and dropout fields
    (``training/run_identity.INIT_OVERRIDABLE``)."""
    allow_data_change: bool = False
    """Let a relaunch train on data whose manifest.json differs from the data the run was
    trained on (deliberately changed data, or data.path moved); recorded in launches/<n>.yaml.
    Without it such a relaunch stops, naming both manifest hashes."""
    init: InitSource = "pretrained"
    """Where a new run's weights come from. ``pretrained``: from ``init_from``; a
    ``model.preset`` that is a public checkpoint's architecture (every preset but ``tiny``) does
    not train without it (the launch stops, naming the conversion command). ``random``: from
    scratch on purpose (normal init, ``model.init_method_std``), as the tiny and demo configs
    state; contradicts ``init_from``. Models without such a preset start random unless
    ``init_from`` is set."""


@dataclass
class RunConfig:
    """Everything one run needs; sub-sections are owned by the modules that consume them."""

    model: ModelConfig = field(default_factory=ModelConfig)
    """The embedding model's architecture."""
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    """Tensor / pipeline parallel layout."""
    loss: LossConfig = field(default_factory=LossConfig)
    """The contrastive loss."""
    precision: PrecisionConfig = field(default_factory=PrecisionConfig)
    """Numeric formats."""
    data: DataConfig = field(default_factory=DataConfig)
    """Training data and the hybrid sampler."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """Optimizer and learning-rate schedule."""
    training: TrainingConfig = field(default_factory=TrainingConfig)
    """The training loop."""
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    """Saving and initial weights."""
    seed: Annotated[int, Bounds(0)] = 1234
    """Seed of the sampler, the synthetic data and the initialisation."""
    seq_length: Annotated[int, Bounds(1)] = 64
    """Longest tokenized query or passage fed to the model."""
