"""The bidirectional embedding model: a Megatron-Core transformer stack without an LM head, plus
pooling.

Why it exists: GPTModel always builds an output layer on the last pipeline stage and expects a
causal mask. An embedder needs the final norm, no logits, a padding (or explicit causal) mask,
and a pooling head on the last stage only. This class composes Megatron-Core's own pieces
(LanguageModelEmbedding, RotaryEmbedding, TransformerBlock) the way BertModel does. Two position
schemes: RoPE (LLMs) or learned absolute positions with token types and an embedding LayerNorm
(BERT-style encoders, ``encoder_layers.EncoderEmbedding``).

What it does not do: know about process groups, data, or losses. Pipeline placement arrives as
``pre_process`` / ``post_process``; parallel sizes arrive in the TransformerConfig.
"""

from __future__ import annotations

from typing import Optional

import torch
from megatron.core import tensor_parallel
from megatron.core.enums import ModelType
from megatron.core.models.common.embeddings.language_model_embedding import LanguageModelEmbedding
from megatron.core.models.common.embeddings.rotary_pos_embedding import RotaryEmbedding
from megatron.core.transformer.module import MegatronModule
from megatron.core.transformer.transformer_block import TransformerBlock, TransformerBlockSubmodules
from megatron.core.transformer.transformer_config import TransformerConfig
from torch import Tensor

from megatron_hybridir.model import packing
from megatron_hybridir.model.encoder_layers import EncoderEmbedding
from megatron_hybridir.model.pooling.head import EmbeddingHead


def build_attention_mask(padding_mask: Tensor, *, layout: str) -> Tensor:
    """Boolean "do not attend" mask from a [b, s] token mask (True = real token).

    ``key_padding`` -> [b, 1, 1, s]: every query may attend to every real key (bidirectional, or
    causal under TE's padding_causal type). ``full`` -> [b, 1, s, s]: key padding OR future keys.
    """
    blocked_keys = ~padding_mask.bool()[:, None, None, :]  # [b, 1, 1, s]
    if layout == "key_padding":
        return blocked_keys
    s = padding_mask.size(1)
    future = torch.ones(s, s, dtype=torch.bool, device=padding_mask.device).triu(1)  # [s, s]
    return blocked_keys | future[None, None]


class EmbeddingModel(MegatronModule):
    """Token ids -> L2-normalised embeddings (last stage) or hidden states (earlier stages)."""

    def __init__(self, config: TransformerConfig, *, block_spec: TransformerBlockSubmodules,
                 vocab_size: int, max_sequence_length: int, head: Optional[EmbeddingHead],
                 mask_layout: str, positions: str = "rope", rotary_base: float = 10000.0,
                 rope_scaling_factor: Optional[float] = None, num_tokentypes: int = 0,
                 position_offset: int = 0, packed_attention: str = "segments",
                 pre_process: bool = True, post_process: bool = True,
                 vp_stage: Optional[int] = None):
        super().__init__(config=config)
        if positions not in ("rope", "learned"):
            raise ValueError(f"positions must be rope or learned, got {positions!r}")
        if packed_attention not in ("thd", "segments"):
            raise ValueError(f"packed_attention must be thd or segments, got {packed_attention!r}")
        # How packed rows are kept apart (model/packing.py): TE's THD kernels, or the local spec's
        # SegmentAttention (one row at a time).
        self.packed_attention = packed_attention
        self.pre_process = pre_process
        self.post_process = post_process
        self.vocab_size = vocab_size
        self.positions = positions
        self.num_tokentypes = num_tokentypes
        self.position_offset = position_offset
        # Longest input: a learned table has max_sequence_length rows, of which the offset's
        # first rows are never used (RoBERTa reserves them for padding).
        self.max_sequence_length = max_sequence_length - position_offset
        self.mask_layout = mask_layout
        self.vp_stage = vp_stage
        # Megatron's schedules read this to decide how activations flow between stages.
        self.model_type = ModelType.encoder_or_decoder
        # No LM head, so nothing is tied across the first and last stage; Megatron's grad
        # finalisation reads this flag before all-reducing "shared" embeddings.
        self.share_embeddings_and_output_weights = False
        if pre_process and positions == "rope":
            self.embedding = LanguageModelEmbedding(
                config=config, vocab_size=vocab_size, max_sequence_length=max_sequence_length,
                position_embedding_type="rope")
        elif pre_process:
            self.embedding = EncoderEmbedding(config, vocab_size=vocab_size,
                                              max_sequence_length=max_sequence_length,
                                              num_tokentypes=num_tokentypes)
        if positions == "rope":
            self.rotary_pos_emb = RotaryEmbedding(
                kv_channels=config.kv_channels, rotary_percent=1.0, rotary_base=rotary_base,
                rope_scaling=rope_scaling_factor is not None,
                rope_scaling_factor=rope_scaling_factor or 8.0,
                use_cpu_initialization=config.use_cpu_initialization)
        self.decoder = TransformerBlock(config=config, spec=block_spec, pre_process=pre_process,
                                        post_process=post_process, vp_stage=vp_stage)
        if post_process:
            if head is None:
                raise ValueError("the last pipeline stage needs a pooling head")
            self.head = head

    def set_input_tensor(self, input_tensor) -> None:
        """Receive the previous pipeline stage's activations (called by Megatron's schedules)."""
        if isinstance(input_tensor, (list, tuple)):
            assert len(input_tensor) == 1, "one input tensor per stage expected"
            input_tensor = input_tensor[0]
        self.decoder.set_input_tensor(input_tensor)

    def forward(self, input_ids: Tensor, attention_mask: Tensor, *,
                cu_seqlens: Optional[Tensor] = None, return_hidden: bool = False) -> Tensor:
        """input_ids [b, s] int, attention_mask [b, s] bool (True = real token, right padded).

        Packed (``cu_seqlens`` [rows + 1] given): input_ids and attention_mask are one stream
        [1, T] holding the rows back to back (``model/packing.py``); the result is per row as if
        unpacked.

        Returns [b, d] embeddings on the last stage ([b, s, h] final-norm states when
        ``return_hidden``; [rows, longest row, h] when packed), and [s, b, h] activations for the
        next stage elsewhere.
        """
        if cu_seqlens is not None:
            return self._forward_packed(input_ids, attention_mask, cu_seqlens,
                                        return_hidden=return_hidden)
        seq_len = attention_mask.size(1)
        self._check_length(seq_len)
        b = attention_mask.size(0)
        positions = (torch.arange(seq_len, device=attention_mask.device)[None].expand(b, seq_len)
                     if self.pre_process else None)
        hidden = self._embed(input_ids, positions) if self.pre_process else None
        rotary = self.rotary_pos_emb(seq_len) if self.positions == "rope" else None
        mask = build_attention_mask(attention_mask, layout=self.mask_layout)
        hidden = self.decoder(hidden_states=hidden, attention_mask=mask, rotary_pos_emb=rotary)
        if not self.post_process:
            return hidden
        hidden = self._gather_sequence(hidden).transpose(0, 1)  # [s, b, h] -> [b, s, h]
        if return_hidden:
            return hidden
        return self.head(hidden, attention_mask).float()

    def _forward_packed(self, input_ids: Tensor, attention_mask: Tensor, cu_seqlens: Tensor, *,
                        return_hidden: bool) -> Tensor:
        if attention_mask.dim() != 2 or attention_mask.size(0) != 1:
            raise ValueError(f"a packed batch is one stream [1, T], got attention_mask of shape "
                             f"{list(attention_mask.shape)}")
        bounds = packing.segment_bounds(cu_seqlens, attention_mask.size(1))
        positions = packing.positions_in_rows(cu_seqlens, attention_mask.size(1))  # [T]
        self._check_length(int((cu_seqlens[1:] - cu_seqlens[:-1]).max()))
        hidden = self._embed(input_ids, positions[None]) if self.pre_process else None
        if self.packed_attention == "thd":
            # TE restarts RoPE positions at each cu_seqlens boundary (Megatron's THD RoPE reads
            # the first len_i rows of the table for row i) and keeps attention inside each row.
            params = packing.thd_params(bounds)
            rotary = (self.rotary_pos_emb(params.max_seqlen_q) if self.positions == "rope"
                      else None)
            hidden = self.decoder(hidden_states=hidden, attention_mask=None,
                                  rotary_pos_emb=rotary, packed_seq_params=params)
        else:
            rotary = (self.rotary_pos_emb(int(positions.max()) + 1)[positions]  # [T, 1, 1, d]
                      if self.positions == "rope" else None)
            hidden = self.decoder(hidden_states=hidden, attention_mask=None, rotary_pos_emb=rotary,
                                  packed_seq_params=packing.segment_params(bounds))
        if not self.post_process:
            return hidden
        hidden = self._gather_sequence(hidden)[:, 0]  # [T, 1, h] -> [T, h]
        rows, row_mask = packing.unpack_rows(hidden, cu_seqlens)  # [rows, L, h], [rows, L]
        if return_hidden:
            return rows
        return self.head(rows, row_mask).float()

    def _check_length(self, seq_len: int) -> None:
        if seq_len > self.max_sequence_length:
            raise ValueError(f"sequence length {seq_len} exceeds the model's position limit "
                             f"{self.max_sequence_length}")

    def _gather_sequence(self, hidden: Tensor) -> Tensor:
        if self.config.sequence_parallel:
            # The head is replicated on every TP rank, so its gradient w.r.t. the gathered states
            # is the same everywhere: backward must split, not reduce-scatter (sum) it.
            hidden = tensor_parallel.gather_from_sequence_parallel_region(
                hidden, tensor_parallel_output_grad=False)
        return hidden

    def _embed(self, input_ids: Tensor, positions: Tensor) -> Tensor:
        """Token (and, for encoders, position and type) embeddings; positions [b, s] count from 0
        inside each row."""
        if self.positions == "rope":
            return self.embedding(input_ids=input_ids, position_ids=None)
        # Right padding: real tokens sit at 0..n-1, so positions are the same as HF's (RoBERTa's
        # padding positions differ, but padded keys are masked and padded outputs unused).
        types = (torch.zeros_like(input_ids) if self.num_tokentypes else None)
        return self.embedding(input_ids=input_ids, position_ids=positions + self.position_offset,
                              tokentype_ids=types)

    def logit_scale(self) -> Optional[Tensor]:
        """Learnable inverse temperature (last stage only), or None when it is fixed."""
        return self.head.logit_scale() if self.post_process else None
