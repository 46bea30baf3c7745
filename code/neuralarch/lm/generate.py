"""Generating text with a :class:`~neuralarch.lm.model.DecoderLM`, with or without a KV cache.

Introduced in lesson 6.4 (``m06-l04``). :func:`generate` extends a prompt one token at a time.
Without a cache every step runs the model over the whole sequence so far, recomputing the keys
and values of every earlier token; with a :class:`~neuralarch.layers.attention.KVCache` the
prompt is read once (the *prefill*) and every later step feeds only the newest token, whose
keys and values are appended to the cache. Both give the same tokens (the tests check it);
:func:`time_generation` measures how much faster the cache is.

Run as a program it samples from the book's trained model (lesson 6.6)::

    python -m neuralarch.lm.generate --prompt "ROMEO:" --tokens 200 --temperature 0.8 \\
        --top-k 50 --top-p 0.95 --seed 0
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

import torch

from neuralarch.lm.model import DecoderLM
from neuralarch.lm.sampling import check_sampling, next_token


@torch.no_grad()  # not inference_mode: its outputs could not be saved for a later backward
def generate(model: DecoderLM, prompt_ids: torch.Tensor, max_new_tokens: int,
             temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
             generator: torch.Generator | None = None, use_cache: bool = True) -> torch.Tensor:
    """Return the prompt (B, T) followed by ``max_new_tokens`` generated ids: (B, T + new).

    ``temperature=0`` (or ``top_k=1``) is greedy decoding. Beyond the model's ``max_seq_len``
    the context slides: the uncached path keeps the last ``max_seq_len`` tokens, the cached
    path re-reads the last half window when its cache is full (the two then differ).
    """
    check_sampling(temperature, top_k, top_p)
    if prompt_ids.ndim == 1:
        prompt_ids = prompt_ids[None]
    if prompt_ids.ndim != 2 or prompt_ids.shape[1] < 1:
        raise ValueError(f"prompt_ids must be (B, T) with T >= 1, got {tuple(prompt_ids.shape)}")
    if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
    window = model.config.max_seq_len
    ids = prompt_ids.long()
    was_training = model.training
    model.eval()  # no dropout while generating
    try:
        cache = model.new_cache(window) if use_cache else None
        if cache is not None:  # prefill: read the prompt (its last window) once
            logits = model(ids[:, -window:], cache)[:, -1]  # (B, V)
        for step in range(max_new_tokens):
            if cache is None:
                logits = model(ids[:, -window:])[:, -1]  # the whole context, every step
            token = next_token(logits, temperature, top_k, top_p, generator)  # (B,)
            ids = torch.cat([ids, token[:, None]], dim=1)  # (B, T + step + 1)
            if cache is not None and step + 1 < max_new_tokens:
                if cache.offset >= window:  # full: start again from the last half window
                    cache.reset()
                    logits = model(ids[:, -(window // 2):], cache)[:, -1]
                else:
                    logits = model(token[:, None], cache)[:, -1]  # one new token, (B, V)
    finally:
        model.train(was_training)
    return ids


def time_generation(model: DecoderLM, prompt_ids: torch.Tensor, max_new_tokens: int = 512,
                    repeats: int = 1) -> dict[str, float]:
    """Seconds for greedy generation with and without the KV cache (best of ``repeats``)."""
    seconds = {}
    outputs = {}
    for use_cache in (True, False):
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            outputs[use_cache] = generate(model, prompt_ids, max_new_tokens, temperature=0.0,
                                          use_cache=use_cache)
            best = min(best, time.perf_counter() - start)
        seconds[use_cache] = best
    return {"cached_s": seconds[True], "uncached_s": seconds[False],
            "speedup": seconds[False] / seconds[True],
            "same_tokens": float(torch.equal(outputs[True], outputs[False])),
            "tokens": float(max_new_tokens)}


def load_model() -> Any:
    """The book's trained Micro-Gemini (lesson 6.6): a DecoderLM carrying its ``tokenizer``."""
    from neuralarch.lm.micro_gemini import micro_gemini  # trains it on first use (cached)

    return micro_gemini().model


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command-line options of ``python -m neuralarch.lm.generate``."""
    parser = argparse.ArgumentParser(prog="python -m neuralarch.lm.generate",
                                     description="Sample text from the book's language model.")
    parser.add_argument("--prompt", default="ROMEO:", help="text to continue")
    parser.add_argument("--tokens", type=int, default=200, help="tokens to generate")
    parser.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    parser.add_argument("--top-k", type=int, default=None, help="sample from the k best")
    parser.add_argument("--top-p", type=float, default=None, help="nucleus probability mass")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampler")
    parser.add_argument("--no-cache", action="store_true", help="recompute every step")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> str:
    """Sample a continuation of ``--prompt``, print it and return it."""
    args = parse_args(argv)
    try:
        check_sampling(args.temperature, args.top_k, args.top_p)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    model = load_model()
    tokenizer = model.tokenizer
    prompt = torch.tensor([tokenizer.encode(args.prompt)], dtype=torch.long)
    if prompt.shape[1] == 0:
        raise SystemExit("error: the prompt encodes to no tokens; give some text")
    ids = generate(model, prompt, args.tokens, args.temperature, args.top_k, args.top_p,
                   torch.Generator().manual_seed(args.seed), use_cache=not args.no_cache)
    text = tokenizer.decode(ids[0].tolist())
    print(text)
    return text


if __name__ == "__main__":
    main()
