"""Turning a sequence-to-sequence model's next-token distributions into output sequences.

Introduced in lesson 5.5 (``m05-l05``). Every decoder here works with any
:class:`~neuralarch.sequence.seq2seq.Seq2SeqModel` (``encode`` once, then ``decode`` the
growing prefix at every step) and returns a :class:`Decoded`: the token ids of each output
(without ``bos`` and ``eos``), their log-probability under the model and the score the search
ranked them by. :func:`greedy_decode` takes the most likely token at each step,
:func:`sample` draws it (with a temperature and optional top-k), and :func:`beam_search`
keeps the ``beam_size`` best prefixes, ranking finished ones with GNMT's length penalty
``lp(Y) = ((5 + |Y|) / 6) ** alpha`` (Wu et al., 2016). ``|Y|`` counts the generated tokens
including ``eos``; an output that reaches ``max_len`` tokens without ``eos`` is cut there.
The decoders re-run the decoder over the whole prefix at every step (no key-value cache; see
lesson 6.4), which is simple and exact.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from neuralarch.sequence.seq2seq import Seq2SeqModel


@dataclass
class Hypothesis:
    """One output sequence: ids (no bos/eos), log p(ids [, eos] | source), rank score."""

    tokens: list[int]
    log_prob: float
    score: float
    finished: bool  # True if it ended with eos, False if max_len cut it


@dataclass
class Decoded:
    """The best output of every source sequence in a batch, and (beam search) the n-best lists."""

    tokens: list[list[int]]  # generated ids of each output, without bos and eos
    log_probs: list[float]  # sum of the model's log-probabilities of those ids (and of eos)
    scores: list[float]  # what the search ranked by (log_prob / lp for beam search)
    finished: list[bool]  # True where the output ended with eos within max_len
    nbest: list[list[Hypothesis]] = field(default_factory=list)  # beam search: best first


def gnmt_length_penalty(length: int, alpha: float) -> float:
    """GNMT's length normaliser ``((5 + length) / 6) ** alpha``; 1 for ``alpha = 0``."""
    return ((5 + length) / 6) ** alpha


@contextmanager
def _eval_mode(model: Any) -> Iterator[None]:
    """Switch dropout off while decoding, then restore the model's previous mode."""
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        if was_training:
            model.train()


def _check(src: torch.Tensor, src_padding_mask: torch.Tensor | None, max_len: int) -> None:
    if src.ndim != 2 or src.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"src must be integer token ids (B, S), got {src.dtype} "
                         f"{tuple(src.shape)}")
    if src_padding_mask is not None and src_padding_mask.shape != src.shape:
        raise ValueError(f"src_padding_mask must have src's shape {tuple(src.shape)}, got "
                         f"{tuple(src_padding_mask.shape)}")
    if not isinstance(max_len, int) or max_len < 1:
        raise ValueError(f"max_len (tokens to generate, eos included) must be an int >= 1, "
                         f"got {max_len!r}")


def select_memory(model: Seq2SeqModel, memory: Any, index: torch.Tensor) -> Any:
    """Rows ``index`` of the memory (batch-first tensors, or tuples/lists/dicts of them)."""
    reorder = getattr(model, "reorder_memory", None)
    if callable(reorder):
        return reorder(memory, index)
    if memory is None:
        return None
    if isinstance(memory, torch.Tensor):
        return memory.index_select(0, index)
    if isinstance(memory, dict):
        return {key: select_memory(model, value, index) for key, value in memory.items()}
    if isinstance(memory, tuple | list):
        parts = [select_memory(model, part, index) for part in memory]
        return type(memory)(*parts) if hasattr(memory, "_fields") else type(memory)(parts)
    raise TypeError(f"cannot select batch rows of a {type(memory).__name__} memory; give the "
                    f"model a reorder_memory(memory, index) method")


def _next_log_probs(model: Seq2SeqModel, ys: torch.Tensor, memory: Any,
                    src_padding_mask: torch.Tensor | None) -> torch.Tensor:
    """log p(next token | prefix ys (N, t), source) for every row: (N, V), in float32."""
    logits = model.decode(ys, memory, src_padding_mask)[:, -1]  # (N, V): last position only
    return torch.log_softmax(logits.float(), dim=-1)


def _strip(ys: torch.Tensor, eos_id: int) -> list[list[int]]:
    """Generated ids (B, T) -> lists cut before the first eos."""
    return [list(itertools.takewhile(lambda token: token != eos_id, row)) for row in ys.tolist()]


def decode_step_by_step(model: Seq2SeqModel, src: torch.Tensor,
                        src_padding_mask: torch.Tensor | None, bos_id: int, eos_id: int,
                        max_len: int, pick: Callable[[torch.Tensor], torch.Tensor]) -> Decoded:
    """Generate left to right, ``pick`` choosing each next token (B,) from log-probs (B, V)."""
    _check(src, src_padding_mask, max_len)
    with _eval_mode(model):
        memory = model.encode(src, src_padding_mask)  # read the source once
        b = src.shape[0]
        ys = torch.full((b, 1), bos_id, dtype=torch.long, device=src.device)  # (B, 1)
        log_prob = torch.zeros(b, device=src.device)
        done = torch.zeros(b, dtype=torch.bool, device=src.device)
        for _ in range(max_len):
            logp = _next_log_probs(model, ys, memory, src_padding_mask)  # (B, V)
            token = pick(logp).masked_fill(done, eos_id)  # finished rows keep writing eos
            step = logp.gather(1, token[:, None]).squeeze(1)  # (B,) log p of the chosen token
            log_prob += step.masked_fill(done, 0.0)
            ys = torch.cat([ys, token[:, None]], dim=1)  # (B, t + 1)
            done |= token == eos_id
            if done.all():
                break
    scores = log_prob.tolist()
    return Decoded(_strip(ys[:, 1:], eos_id), scores, scores, done.tolist())


def greedy_decode(model: Seq2SeqModel, src: torch.Tensor,
                  src_padding_mask: torch.Tensor | None, bos_id: int, eos_id: int,
                  max_len: int) -> Decoded:
    """Take the most likely next token at every step (batched)."""
    return decode_step_by_step(model, src, src_padding_mask, bos_id, eos_id, max_len,
                               pick=lambda logp: logp.argmax(dim=-1))


def check_top_k_top_p(top_k: int | None, top_p: float | None) -> None:
    """Raise a ValueError unless top_k is None or an int >= 1 and top_p None or in (0, 1]."""
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int)
                              or top_k < 1):
        raise ValueError(f"top_k must be None or an int >= 1, got {top_k!r}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be None or in (0, 1], got {top_p!r}")


def filter_logits(scores: torch.Tensor, top_k: int | None = None,
                  top_p: float | None = None) -> torch.Tensor:
    """Set to -inf every score (..., V) outside the top k and outside the top-p nucleus.

    Top-k keeps the ``k`` largest scores of each row. Top-p (nucleus sampling, Holtzman et al.,
    2020) keeps the smallest set of most likely tokens whose probability reaches ``p``: a token
    is dropped when the tokens ranked above it already hold ``p`` of the mass. Added in lesson
    6.4 (``m06-l04``) for the language model's sampler; both filters apply when both are given.
    """
    check_top_k_top_p(top_k, top_p)
    if top_k is not None and top_k < scores.shape[-1]:
        kth = scores.topk(top_k, dim=-1).values[..., -1:]  # (..., 1): the k-th largest
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_scores, order = scores.sort(dim=-1, descending=True)  # (..., V)
        probs = torch.softmax(sorted_scores, dim=-1)
        mass_before = probs.cumsum(dim=-1) - probs  # mass of the tokens ranked above
        drop_sorted = mass_before >= top_p  # the first token always stays (mass_before = 0)
        drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
        scores = scores.masked_fill(drop, float("-inf"))
    return scores


def sample(model: Seq2SeqModel, src: torch.Tensor, src_padding_mask: torch.Tensor | None,
           bos_id: int, eos_id: int, max_len: int, temperature: float = 1.0,
           top_k: int | None = None, generator: torch.Generator | None = None,
           top_p: float | None = None) -> Decoded:
    """Draw each next token from softmax(logits / temperature), optionally from the top k only.

    ``top_p`` (optional) samples from the nucleus of :func:`filter_logits` instead.

    The returned ``log_probs`` are under the model itself (temperature 1), so samples drawn at
    different temperatures can be compared; ``generator`` makes the draws reproducible.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0 (use greedy_decode for 0), got {temperature}")
    check_top_k_top_p(top_k, top_p)

    def pick(logp: torch.Tensor) -> torch.Tensor:
        scaled = logp / temperature  # (B, V): T < 1 sharpens, T > 1 flattens
        probs = torch.softmax(filter_logits(scaled, top_k, top_p), dim=-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)  # (B,)

    return decode_step_by_step(model, src, src_padding_mask, bos_id, eos_id, max_len, pick)


def _keep(pool: list[Hypothesis], hyp: Hypothesis, size: int) -> None:
    """Insert ``hyp`` into the sorted list ``pool`` (best first), keeping at most ``size``."""
    pool.append(hyp)
    pool.sort(key=lambda h: h.score, reverse=True)
    del pool[size:]


def beam_search(model: Seq2SeqModel, src: torch.Tensor, src_padding_mask: torch.Tensor | None,
                bos_id: int, eos_id: int, max_len: int, beam_size: int = 4,
                length_penalty: float = 0.6) -> Decoded:
    """Keep the ``beam_size`` most likely prefixes per source; rank finished outputs by
    ``log p(Y) / lp(Y)`` with GNMT's ``lp`` (``length_penalty`` is its alpha; 0 = raw log p).

    An ``eos`` candidate finishes a hypothesis only if it ranks among the step's ``beam_size``
    best candidates (so ``beam_size=1`` is greedy decoding). A source is done when it has
    ``beam_size`` finished hypotheses and no live prefix can still beat the worst of them.
    """
    _check(src, src_padding_mask, max_len)
    if not isinstance(beam_size, int) or beam_size < 1:
        raise ValueError(f"beam_size must be an int >= 1, got {beam_size!r}")
    if not length_penalty >= 0:
        raise ValueError(f"length_penalty (alpha) must be >= 0, got {length_penalty}")
    b, k, device = src.shape[0], beam_size, src.device
    with _eval_mode(model):
        rows = torch.arange(b, device=device).repeat_interleave(k)  # (B*K,) beam -> source
        memory = select_memory(model, model.encode(src, src_padding_mask), rows)
        mask = None if src_padding_mask is None else src_padding_mask[rows]  # (B*K, S)
        ys = torch.full((b * k, 1), bos_id, dtype=torch.long, device=device)  # (B*K, 1)
        beam_logp = torch.full((b, k), float("-inf"), device=device)
        beam_logp[:, 0] = 0.0  # one live beam at the start: the others would be duplicates
        pools: list[list[Hypothesis]] = [[] for _ in range(b)]  # finished, best first
        done = [False] * b
        best_possible_lp = gnmt_length_penalty(max_len, length_penalty)
        for t in range(max_len):
            logp = _next_log_probs(model, ys, memory, mask)  # (B*K, V)
            v = logp.shape[-1]
            cand = (beam_logp.reshape(b * k, 1) + logp).view(b, k * v)  # (B, K*V)
            top_logp, top_idx = cand.topk(min(2 * k, k * v), dim=1)  # (B, 2K)
            top_logp_rows, top_idx_rows = top_logp.tolist(), top_idx.tolist()  # one copy each
            parents, tokens, new_logp = [], [], []
            for i in range(b):
                keep: list[tuple[int, int, float]] = []  # (parent row, token, log p)
                candidates = zip(top_logp_rows[i], top_idx_rows[i], strict=True)
                for rank, (lp, idx) in enumerate(candidates):
                    if done[i] or lp == float("-inf") or len(keep) == k:
                        break
                    beam, token = divmod(idx, v)
                    if token == eos_id:
                        if rank < k:  # only an eos among the k best candidates finishes
                            prefix = ys[i * k + beam, 1:].tolist()
                            _keep(pools[i], Hypothesis(prefix, lp, lp / gnmt_length_penalty(
                                t + 1, length_penalty), True), k)
                    else:
                        keep.append((i * k + beam, token, lp))
                keep += [(i * k, eos_id, float("-inf"))] * (k - len(keep))  # dead fillers
                for parent, token, lp in keep:
                    parents.append(parent)
                    tokens.append(token)
                    new_logp.append(lp)
            parents_t = torch.tensor(parents, device=device)
            ys = torch.cat([ys[parents_t], torch.tensor(tokens, device=device)[:, None]], dim=1)
            beam_logp = torch.tensor(new_logp, device=device).view(b, k)
            best_alive = beam_logp.max(dim=1).values.tolist()  # (B,)
            for i in range(b):  # done: no live prefix can beat the worst kept hypothesis
                bound = best_alive[i] / best_possible_lp
                done[i] = done[i] or (len(pools[i]) == k and bound <= pools[i][-1].score)
            if all(done):
                break
        for i in range(b):  # prefixes still alive at max_len end there, without eos
            if done[i]:
                continue
            for j in range(k):
                lp = beam_logp[i, j].item()
                if lp > float("-inf"):
                    _keep(pools[i], Hypothesis(ys[i * k + j, 1:].tolist(), lp, lp /
                                               gnmt_length_penalty(ys.shape[1] - 1,
                                                                   length_penalty), False), k)
    best = [pool[0] for pool in pools]
    return Decoded([h.tokens for h in best], [h.log_prob for h in best],
                   [h.score for h in best], [h.finished for h in best], nbest=pools)


def sequence_log_probs(model: Seq2SeqModel, src: torch.Tensor,
                       src_padding_mask: torch.Tensor | None, outputs: list[list[int]],
                       bos_id: int, eos_id: int, add_eos: bool | list[bool] = True,
                       pad_id: int = 0) -> torch.Tensor:
    """log p(output [+ eos] | source) (B,) of given outputs, by one teacher-forced pass."""
    if len(outputs) != src.shape[0]:
        raise ValueError(f"need one output per source row: {len(outputs)} vs {src.shape[0]}")
    flags = [add_eos] * len(outputs) if isinstance(add_eos, bool) else list(add_eos)
    seqs = [[bos_id, *out, *([eos_id] if flag else [])] for out, flag in zip(outputs, flags,
                                                                                strict=True)]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long, device=src.device)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)] = torch.tensor(seq)
    targets, real = ids[:, 1:], torch.zeros_like(ids[:, 1:], dtype=torch.bool)
    for row, seq in enumerate(seqs):
        real[row, : len(seq) - 1] = True
    with _eval_mode(model):
        logp = torch.log_softmax(model(src, ids[:, :-1], src_padding_mask).float(), dim=-1)
    picked = logp.gather(2, targets[..., None]).squeeze(2)  # (B, T)
    return picked.masked_fill(~real, 0.0).sum(dim=1)  # (B,)
