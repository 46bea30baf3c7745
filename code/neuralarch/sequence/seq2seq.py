"""The encoder-decoder transformer (Vaswani et al., 2017): an encoder reads, a decoder writes.

Introduced in lesson 5.5 (``m05-l05``). The encoder turns the source tokens into a *memory*
(B, S, D) with bidirectional self-attention; the decoder predicts the target one token at a
time with causal self-attention over what it has written so far and cross-attention to the
memory. Both stacks are :class:`~neuralarch.layers.transformer.TransformerBlock` s, the book's
one block. :class:`Seq2SeqModel` is the protocol that every sequence-to-sequence model in the
book follows (this transformer, project 5's GRU with attention), so that the decoders of
:mod:`neuralarch.sequence.decoding` and the trainer of
:mod:`neuralarch.sequence.seq2seq_training` work with all of them.
:func:`torch_transformer` / :func:`load_torch_transformer` map the weights onto ``nn.Transformer``.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Literal, Protocol, runtime_checkable

import torch
from pydantic import Field, model_validator
from torch import nn

from neuralarch.config import ArchConfig
from neuralarch.layers.transformer import TransformerBlock, load_torch_state, to_torch_state
from neuralarch.sequence.positional import sinusoidal_table


@runtime_checkable
class Seq2SeqModel(Protocol):
    """What the decoders and the trainer need from a sequence-to-sequence model.

    ``memory`` is whatever ``decode`` understands: a tensor, or a tuple of tensors, whose first
    axis is the batch (beam search repeats and reorders it along that axis; a model whose memory
    is laid out otherwise defines ``reorder_memory(memory, index) -> memory``).
    """

    def encode(self, src: torch.Tensor, src_padding_mask: torch.Tensor | None = None) -> Any:
        """Read the source ids (B, S) (mask True at padding) into a memory."""
        ...

    def decode(self, tgt_in: torch.Tensor, memory: Any,
               src_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Next-token logits (B, T, V); position t sees tgt_in[:, :t+1] only (causal)."""
        ...

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor,
                src_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``decode(tgt_in, encode(src, mask), mask)``: logits (B, T, V)."""
        ...


class Seq2SeqConfig(ArchConfig):
    """Shape of a :class:`Seq2SeqTransformer`; the defaults are a CPU-sized model."""

    src_vocab: int = Field(32, gt=1, description="source vocabulary size (ids 0..src_vocab-1)")
    tgt_vocab: int = Field(32, gt=1, description="target vocabulary size (ids 0..tgt_vocab-1)")
    dim: int = Field(64, gt=0, description="width of every token (the residual stream), D")
    heads: int = Field(4, gt=0, description="attention heads; must divide dim")
    encoder_layers: int = Field(2, gt=0, description="encoder blocks")
    decoder_layers: int = Field(2, gt=0, description="decoder blocks")
    ffn_dim: int = Field(128, gt=0, description="hidden width of each feed-forward network")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="dropout probability")
    max_len: int = Field(64, gt=0, description="longest source or target sequence, tokens")
    norm_first: bool = Field(True, description="pre-norm (True) or the 2017 post-norm (False)")
    activation: Literal["relu", "gelu"] = Field("relu", description="feed-forward activation")
    pad_id: int = Field(0, ge=0, description="padding id in both vocabularies")
    tie_embeddings: bool = Field(False, description="output projection = target embedding^T")

    @model_validator(mode="after")
    def _shapes_fit(self) -> Seq2SeqConfig:
        if self.dim % self.heads:
            divisors = [h for h in range(1, self.dim + 1) if self.dim % h == 0]
            raise ValueError(f"dim ({self.dim}) must be divisible by heads ({self.heads}); "
                             f"allowed heads for this dim include {divisors[:8]}")
        if self.dim % 2:
            raise ValueError(f"dim ({self.dim}) must be even: sinusoidal positions pair sin "
                             f"and cos")
        if self.pad_id >= min(self.src_vocab, self.tgt_vocab):
            raise ValueError(f"pad_id ({self.pad_id}) must be a valid id in both vocabularies "
                             f"(< {min(self.src_vocab, self.tgt_vocab)})")
        return self


class Seq2SeqTransformer(nn.Module):
    """Embeddings x sqrt(D) + sinusoidal positions, encoder blocks, decoder blocks, projection."""

    def __init__(self, config: Seq2SeqConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or Seq2SeqConfig()
        self.src_embed = nn.Embedding(c.src_vocab, c.dim, padding_idx=c.pad_id)
        self.tgt_embed = nn.Embedding(c.tgt_vocab, c.dim, padding_idx=c.pad_id)
        self.register_buffer("positions", sinusoidal_table(c.max_len, c.dim), persistent=False)
        self.drop = nn.Dropout(c.dropout)
        block = dict(dim=c.dim, heads=c.heads, ffn_dim=c.ffn_dim, dropout=c.dropout,
                     activation=c.activation, norm_first=c.norm_first)
        self.encoder = nn.ModuleList(TransformerBlock(**block) for _ in range(c.encoder_layers))
        self.decoder = nn.ModuleList(TransformerBlock(**block, causal=True, cross_attention=True)
                                     for _ in range(c.decoder_layers))
        # A pre-norm stack's residual stream is never normalised: one final LayerNorm each.
        self.encoder_norm = nn.LayerNorm(c.dim) if c.norm_first else nn.Identity()
        self.decoder_norm = nn.LayerNorm(c.dim) if c.norm_first else nn.Identity()
        self.out_proj = nn.Linear(c.dim, c.tgt_vocab)
        for embed in (self.src_embed, self.tgt_embed):  # x sqrt(D) below gives unit scale
            nn.init.normal_(embed.weight, std=c.dim ** -0.5)
            with torch.no_grad():
                embed.weight[c.pad_id].zero_()
        if c.tie_embeddings:
            self.out_proj.weight = self.tgt_embed.weight  # (V, D), shared

    def _embed(self, table: nn.Embedding, ids: torch.Tensor) -> torch.Tensor:
        """Token ids (B, T) -> scaled embeddings plus positions (B, T, D)."""
        if ids.ndim != 2:
            raise ValueError(f"token ids must be (B, T), got shape {tuple(ids.shape)}")
        if ids.shape[1] > self.config.max_len:
            raise ValueError(f"sequence of {ids.shape[1]} tokens is longer than max_len="
                             f"{self.config.max_len}; build the model with a larger max_len")
        x = table(ids) * math.sqrt(self.config.dim)  # (B, T, D)
        return self.drop(x + self.positions[: ids.shape[1]])  # (B, T, D)

    def encode(self, src: torch.Tensor,
               src_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Read source ids (B, S) into the memory (B, S, D); the mask is True at padding."""
        x = self._embed(self.src_embed, src)  # (B, S, D)
        for block in self.encoder:  # every source token sees every other (no causal mask)
            x = block(x, key_padding_mask=src_padding_mask)
        return self.encoder_norm(x)  # (B, S, D)

    def decode(self, tgt_in: torch.Tensor, memory: torch.Tensor,
               src_padding_mask: torch.Tensor | None = None,
               tgt_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Next-token logits (B, T, V) for target prefix ids (B, T), attending to the memory."""
        y = self._embed(self.tgt_embed, tgt_in)  # (B, T, D)
        for block in self.decoder:  # causal self-attention, then cross-attention to memory
            y = block(y, memory, key_padding_mask=tgt_padding_mask,
                      memory_key_padding_mask=src_padding_mask)
        return self.out_proj(self.decoder_norm(y))  # (B, T, V)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor,
                src_padding_mask: torch.Tensor | None = None,
                tgt_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher-forced logits (B, T, V): position t predicts the target token t + 1."""
        memory = self.encode(src, src_padding_mask)
        return self.decode(tgt_in, memory, src_padding_mask, tgt_padding_mask)

    @torch.no_grad()
    def cross_attention_maps(self, src: torch.Tensor, tgt_in: torch.Tensor,
                             src_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Cross-attention weights (layers, B, heads, T, S): where each target step looks."""
        maps: list[torch.Tensor] = []

        def grab(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
            # Recompute the same attention with its weights (the block asks for none);
            # .forward, not the call, so that this hook does not fire again.
            maps.append(module.forward(*args, **{**kwargs, "need_weights": True,
                                         "average_weights": False})[1])

        hooks = [block.cross_attn.register_forward_hook(grab, with_kwargs=True)
                 for block in self.decoder]
        try:
            self(src, tgt_in, src_padding_mask)
        finally:
            for hook in hooks:
                hook.remove()
        return torch.stack(maps)  # (layers, B, heads, T, S)


# --- the map to and from nn.Transformer -----------------------------------------------------

def _stacks(model: Seq2SeqTransformer, torch_model: nn.Transformer) -> list[tuple[Any, Any]]:
    return [*zip(model.encoder, torch_model.encoder.layers, strict=True),
            *zip(model.decoder, torch_model.decoder.layers, strict=True)]


def torch_transformer(model: Seq2SeqTransformer) -> nn.Transformer:
    """``nn.Transformer`` (batch_first) with the same shape and a copy of the block weights.

    Only the encoder-decoder core maps: torch's module has no embeddings or output layer. Torch
    always ends each stack with a LayerNorm; a post-norm stack already ends in one, so for
    ``norm_first=False`` those two final norms are removed (set to ``None``).
    """
    c = model.config
    with warnings.catch_warnings():  # torch notes that its nested-tensor fast path is off
        warnings.filterwarnings("ignore", message="enable_nested_tensor is True")
        torch_model = nn.Transformer(
            d_model=c.dim, nhead=c.heads, num_encoder_layers=c.encoder_layers,
            num_decoder_layers=c.decoder_layers, dim_feedforward=c.ffn_dim, dropout=c.dropout,
            activation=c.activation, batch_first=True, norm_first=c.norm_first)
    if not c.norm_first:
        torch_model.encoder.norm = None
        torch_model.decoder.norm = None
    load_torch_transformer(model, torch_model, into="torch")
    return torch_model


@torch.no_grad()
def load_torch_transformer(model: Seq2SeqTransformer, torch_model: nn.Transformer,
                           into: Literal["ours", "torch"] = "ours") -> None:
    """Copy the core weights from ``torch_model`` into ``model`` (or the other way), in place."""
    if into not in ("ours", "torch"):
        raise ValueError(f"into must be 'ours' or 'torch', got {into!r}")
    c = model.config
    if (len(torch_model.encoder.layers), len(torch_model.decoder.layers)) != (
            c.encoder_layers, c.decoder_layers):
        raise ValueError(f"layer counts differ: ours {c.encoder_layers}+{c.decoder_layers}, "
                         f"torch {len(torch_model.encoder.layers)}+"
                         f"{len(torch_model.decoder.layers)}")
    has_norm = torch_model.encoder.norm is not None and torch_model.decoder.norm is not None
    if has_norm != c.norm_first:
        raise ValueError(f"final norms do not match: ours norm_first={c.norm_first}, torch has "
                         f"final norms: {has_norm}; use torch_transformer(model) to build one")
    for ours, theirs in _stacks(model, torch_model):
        if into == "ours":
            load_torch_state(ours, theirs.state_dict())
        else:
            theirs.load_state_dict(to_torch_state(ours))
    if c.norm_first:
        pairs = [(model.encoder_norm, torch_model.encoder.norm),
                 (model.decoder_norm, torch_model.decoder.norm)]
        for ours, theirs in pairs:
            source, target = (theirs, ours) if into == "ours" else (ours, theirs)
            target.load_state_dict(source.state_dict())
