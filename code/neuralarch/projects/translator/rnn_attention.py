"""A GRU encoder-decoder with attention (Bahdanau et al., 2015; Luong et al., 2015).

Introduced in lesson 5.6 (``m05-l06``), where it competes with the transformer of lesson 5.5.
The encoder is a bidirectional GRU: each source position gets a state that has read the whole
sentence from both ends. The decoder is a GRU over the target prefix, started from a summary
of the source; at every step its state queries the encoder states with one head of the book's
:class:`~neuralarch.layers.attention.MultiHeadAttention`, and the output layer reads the
state and the attended context together (Luong's "attentional hidden state"). Because the
attention is computed *after* the recurrent step, teacher forcing runs the whole target in one
call. It follows the :class:`~neuralarch.sequence.seq2seq.Seq2SeqModel` protocol, so the
transformer's decoders and trainer drive it unchanged.
"""

from __future__ import annotations

import torch
from pydantic import Field, model_validator
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from neuralarch.config import ArchConfig
from neuralarch.layers.attention import MultiHeadAttention


class GRUAttentionConfig(ArchConfig):
    """Shape of a :class:`GRUAttentionSeq2Seq`; the defaults are a CPU-sized model."""

    src_vocab: int = Field(32, gt=1, description="source vocabulary size")
    tgt_vocab: int = Field(32, gt=1, description="target vocabulary size")
    dim: int = Field(64, gt=0, description="embedding and state width, D (even)")
    layers: int = Field(1, gt=0, description="stacked GRU layers in the encoder and decoder")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="dropout on embeddings and outputs")
    pad_id: int = Field(0, ge=0, description="padding id in both vocabularies")

    @model_validator(mode="after")
    def _shapes_fit(self) -> GRUAttentionConfig:
        if self.dim % 2:
            raise ValueError(f"dim ({self.dim}) must be even: the two encoder directions get "
                             f"dim / 2 each")
        if self.pad_id >= min(self.src_vocab, self.tgt_vocab):
            raise ValueError(f"pad_id ({self.pad_id}) must be < both vocabulary sizes")
        return self


class GRUAttentionSeq2Seq(nn.Module):
    """Bidirectional GRU encoder, GRU decoder, one-head attention from decoder to encoder."""

    def __init__(self, config: GRUAttentionConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or GRUAttentionConfig()
        self.src_embed = nn.Embedding(c.src_vocab, c.dim, padding_idx=c.pad_id)
        self.tgt_embed = nn.Embedding(c.tgt_vocab, c.dim, padding_idx=c.pad_id)
        # each direction dim / 2 wide, so that the concatenated states are dim wide
        self.encoder = nn.GRU(c.dim, c.dim // 2, c.layers, batch_first=True,
                              bidirectional=True)
        self.init_state = nn.Linear(c.dim, c.layers * c.dim)  # source summary -> decoder h0
        self.decoder = nn.GRU(c.dim, c.dim, c.layers, batch_first=True)
        self.attn = MultiHeadAttention(c.dim, heads=1)
        self.combine = nn.Linear(2 * c.dim, c.dim)  # [state; context] -> attentional state
        self.out_proj = nn.Linear(c.dim, c.tgt_vocab)
        self.drop = nn.Dropout(c.dropout)

    def encode(self, src: torch.Tensor,
               src_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Read source ids (B, S) into encoder states (B, S, D), zero at padding."""
        if src.ndim != 2:
            raise ValueError(f"src must be token ids (B, S), got shape {tuple(src.shape)}")
        x = self.drop(self.src_embed(src))  # (B, S, D)
        if src_padding_mask is None:
            return self.encoder(x)[0]  # (B, S, D)
        lengths = (~src_padding_mask).sum(1).cpu()  # (B,)
        # packing makes the backward direction start at each sentence's last real token
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        states, _ = pad_packed_sequence(self.encoder(packed)[0], batch_first=True,
                                        total_length=src.shape[1])
        return states  # (B, S, D)

    def initial_state(self, memory: torch.Tensor,
                      src_padding_mask: torch.Tensor | None) -> torch.Tensor:
        """The decoder's first state (layers, B, D): tanh of a map of the mean encoder state."""
        if src_padding_mask is None:
            mean = memory.mean(1)  # (B, D)
        else:
            keep = (~src_padding_mask).unsqueeze(-1).to(memory.dtype)  # (B, S, 1)
            mean = (memory * keep).sum(1) / keep.sum(1).clamp(min=1)  # (B, D)
        h0 = torch.tanh(self.init_state(mean))  # (B, layers * D)
        return h0.view(-1, self.config.layers, self.config.dim).transpose(0, 1).contiguous()

    def decode(self, tgt_in: torch.Tensor, memory: torch.Tensor,
               src_padding_mask: torch.Tensor | None = None,
               return_attention: bool = False
               ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Next-token logits (B, T, V) for target prefix ids (B, T); causal by recurrence.

        With ``return_attention`` also the attention weights (B, T, S).
        """
        if tgt_in.ndim != 2:
            raise ValueError(f"tgt_in must be token ids (B, T), got shape {tuple(tgt_in.shape)}")
        h0 = self.initial_state(memory, src_padding_mask)  # (layers, B, D)
        states, _ = self.decoder(self.drop(self.tgt_embed(tgt_in)), h0)  # (B, T, D)
        # every target step queries every source state; padding keys are masked out
        context, weights = self.attn(states, memory, memory, key_padding_mask=src_padding_mask,
                                     need_weights=return_attention)  # (B, T, D)
        attended = torch.tanh(self.combine(torch.cat([states, context], dim=-1)))  # (B, T, D)
        logits = self.out_proj(self.drop(attended))  # (B, T, V)
        return (logits, weights) if return_attention else logits

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor,
                src_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher-forced logits (B, T, V): position t predicts the target token t + 1."""
        return self.decode(tgt_in, self.encode(src, src_padding_mask), src_padding_mask)

    @torch.no_grad()
    def attention_map(self, src: torch.Tensor, tgt_in: torch.Tensor,
                      src_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Attention weights (B, T, S): where each target step reads the source."""
        memory = self.encode(src, src_padding_mask)
        return self.decode(tgt_in, memory, src_padding_mask, return_attention=True)[1]
