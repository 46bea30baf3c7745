"""Choosing a language model's next token: greedy, temperature, top-k and top-p (nucleus).

Introduced in lesson 6.4 (``m06-l04``) and used by :mod:`neuralarch.lm.generate`. The
filters themselves are :func:`~neuralarch.sequence.decoding.filter_logits` of lesson 5.5's
decoders (one implementation for the whole book); this module applies them to the last
position's logits of a decoder-only model.
"""

from __future__ import annotations

import torch

from neuralarch.sequence.decoding import check_top_k_top_p, filter_logits


def check_sampling(temperature: float, top_k: int | None, top_p: float | None) -> None:
    """Raise a ValueError for a negative temperature or an invalid top_k / top_p."""
    if not temperature >= 0:
        raise ValueError(f"temperature must be >= 0 (0 means greedy), got {temperature}")
    check_top_k_top_p(top_k, top_p)


def next_token_probs(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                     top_p: float | None = None) -> torch.Tensor:
    """The distribution (B, V) the next token is drawn from, for last-position logits (B, V).

    ``temperature`` divides the logits before the softmax (below 1 sharpens, above 1 flattens);
    0 puts all the mass on the argmax (greedy). Top-k and top-p then cut the tail.
    """
    check_sampling(temperature, top_k, top_p)
    logits = logits.float()
    if temperature == 0:  # the limit T -> 0 of softmax(logits / T): a one-hot on the argmax
        return torch.nn.functional.one_hot(logits.argmax(dim=-1), logits.shape[-1]).float()
    return torch.softmax(filter_logits(logits / temperature, top_k, top_p), dim=-1)


def next_token(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
               top_p: float | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw the next token ids (B,) from last-position logits (B, V); greedy when T = 0."""
    check_sampling(temperature, top_k, top_p)
    if temperature == 0 or top_k == 1:  # deterministic: no random number is consumed
        return logits.argmax(dim=-1)
    probs = next_token_probs(logits, temperature, top_k, top_p)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)  # (B,)
