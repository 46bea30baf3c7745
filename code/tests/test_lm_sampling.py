"""Tests of next-token selection (lesson 6.4): temperature, top-k, top-p and greedy."""

from __future__ import annotations

import pytest
import torch

from neuralarch.lm.sampling import next_token, next_token_probs
from neuralarch.sequence.decoding import filter_logits


def test_top_p_keeps_smallest_set_reaching_p() -> None:
    probs = torch.tensor([[0.05, 0.4, 0.1, 0.3, 0.15]])
    logits = probs.log()
    kept = next_token_probs(logits, top_p=0.7) > 0  # 0.4 + 0.3 = 0.7 reaches p exactly
    assert kept.tolist() == [[False, True, False, True, False]]
    kept = next_token_probs(logits, top_p=0.71) > 0  # needs the third, 0.15
    assert kept.tolist() == [[False, True, False, True, True]]
    kept = next_token_probs(logits, top_p=0.1) > 0  # the top token alone always stays
    assert kept.tolist() == [[False, True, False, False, False]]
    torch.testing.assert_close(next_token_probs(logits, top_p=0.71)[0, [1, 3, 4]],
                               torch.tensor([0.4, 0.3, 0.15]) / 0.85)


@pytest.mark.parametrize("v, k", [(10, 3), (7, 7), (5, 1)])
def test_top_k_keeps_k_largest(v: int, k: int) -> None:
    logits = torch.randn(4, v, generator=torch.Generator().manual_seed(v))
    kept = filter_logits(logits, top_k=k) > float("-inf")
    assert kept.sum(dim=-1).tolist() == [k] * 4
    expected = torch.zeros_like(kept).scatter(1, logits.topk(k, dim=-1).indices, True)
    assert torch.equal(kept, expected)


def test_zero_temperature_and_top_k_one_are_greedy() -> None:
    logits = torch.randn(6, 20, generator=torch.Generator().manual_seed(0))
    greedy = logits.argmax(dim=-1)
    assert torch.equal(next_token(logits, temperature=0.0), greedy)
    assert torch.equal(next_token(logits, temperature=1.3, top_k=1), greedy)
    tiny_t = next_token(logits, temperature=1e-4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(tiny_t, greedy)  # T -> 0 approaches greedy


def test_sampling_matches_its_distribution() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]]).expand(20_000, 4)
    draws = next_token(logits, temperature=0.5, top_k=3, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=4).float() / len(draws)
    expected = next_token_probs(logits[:1], temperature=0.5, top_k=3)[0]
    assert freq[3] == 0  # outside the top 3: never drawn
    torch.testing.assert_close(freq, expected, atol=0.015, rtol=0.0)


@pytest.mark.parametrize("kwargs, match", [
    ({"temperature": -1.0}, "temperature"), ({"top_k": 0}, "top_k"), ({"top_p": 0.0}, "top_p"),
    ({"top_p": 1.5}, "top_p"),
])
def test_rejects_bad_settings(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        next_token(torch.zeros(1, 3), **kwargs)
