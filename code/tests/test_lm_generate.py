"""Tests of text generation with and without the KV cache, and of its command line (lesson 6.4)."""

from __future__ import annotations

import pytest
import torch

from neuralarch.lm import generate as generate_module
from neuralarch.lm.generate import generate, main, time_generation
from neuralarch.lm.model import DecoderLM, LMConfig


def tiny_model(**changes: object) -> DecoderLM:
    torch.manual_seed(0)
    config = LMConfig(vocab_size=40, dim=32, n_layers=2, n_heads=4, ffn_dim=48, max_seq_len=48)
    return DecoderLM(config.replace(**changes)).eval()


@pytest.mark.parametrize("n_kv_heads", [None, 2])
def test_cached_greedy_equals_uncached(n_kv_heads: int | None) -> None:
    model = tiny_model(n_kv_heads=n_kv_heads)
    prompt = torch.randint(0, 40, (3, 5), generator=torch.Generator().manual_seed(1))
    cached = generate(model, prompt, 30, temperature=0.0, use_cache=True)
    uncached = generate(model, prompt, 30, temperature=0.0, use_cache=False)
    assert cached.shape == (3, 35) and torch.equal(cached[:, :5], prompt)
    assert torch.equal(cached, uncached)


def test_cached_sampling_equals_uncached_with_same_seed() -> None:
    model = tiny_model()
    prompt = torch.tensor([[1, 2, 3]])
    runs = [generate(model, prompt, 25, temperature=0.9, top_k=10, top_p=0.9,
                     generator=torch.Generator().manual_seed(5), use_cache=cache)
            for cache in (True, False)]
    assert torch.equal(*runs)


def test_greedy_equals_step_by_step_argmax() -> None:
    model = tiny_model()
    ids = torch.tensor([[7, 8]])
    out = generate(model, ids, 6, temperature=0.0)
    with torch.no_grad():
        for _ in range(6):
            ids = torch.cat([ids, model(ids)[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out, ids)


def test_generation_past_the_window_keeps_going() -> None:
    model = tiny_model(max_seq_len=16)
    for use_cache in (True, False):
        out = generate(model, torch.tensor([[1, 2, 3]]), 40, temperature=0.0, use_cache=use_cache)
        assert out.shape == (1, 43)


def test_time_generation_reports_both() -> None:
    timing = time_generation(tiny_model(), torch.tensor([[1, 2]]), 20)
    assert timing["same_tokens"] == 1.0 and timing["cached_s"] > 0 and timing["uncached_s"] > 0


def test_generate_restores_training_mode_and_validates() -> None:
    model = tiny_model().train()
    generate(model, torch.tensor([1, 2]), 2)
    assert model.training
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate(model, torch.tensor([[1]]), -1)


class CharTokenizer:
    """A stand-in for the trained model's tokenizer: one id per character code."""

    def encode(self, text: str) -> list[int]:
        return [ord(c) % 40 for c in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(chr(65 + i % 26) for i in ids)


def test_main_uses_the_loaded_model(monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    model = tiny_model()
    model.tokenizer = CharTokenizer()
    monkeypatch.setattr(generate_module, "load_model", lambda: model)
    argv = ["--prompt", "ROMEO:", "--tokens", "12", "--temperature", "0.8", "--top-k", "5",
            "--top-p", "0.95", "--seed", "0"]
    text = main(argv)
    assert len(text) == len("ROMEO:") + 12 and text in capsys.readouterr().out
    assert main(argv) == text  # the seed makes it reproducible
    assert main([*argv, "--no-cache"]) == text
    with pytest.raises(SystemExit):
        main(["--temperature", "-1"])


def test_generated_ids_can_feed_a_training_step() -> None:
    model = tiny_model()
    out = generate(model, torch.tensor([[1, 2, 3]]), 5, temperature=0.0)
    model(out).sum().backward()  # e.g. a policy-gradient step on sampled text
    assert model.embed.weight.grad is not None
