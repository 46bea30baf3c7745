"""Shards on disk, document packing and the random-window sampler of lesson 6.5."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from neuralarch.lm.shards import (
    RandomWindowSampler,
    open_shard,
    pack_documents,
    sequential_windows,
    shard_for,
    text_checksum,
    token_dtype,
    tokenizer_hash,
    write_shard,
)


@pytest.mark.parametrize("vocab, dtype", [(65, np.uint16), (2**16, np.uint16),
                                          (2**16 + 1, np.uint32), (50_257, np.uint16)])
def test_token_dtype_is_the_smallest_that_fits(vocab, dtype):
    assert token_dtype(vocab) == np.dtype(dtype)


@pytest.mark.parametrize("vocab", [300, 70_000])
def test_shard_round_trip_is_memory_mapped(tmp_path, vocab):
    tokens = np.random.default_rng(0).integers(0, vocab, 1000)
    path = write_shard(tmp_path / "train", tokens, vocab, tokenizer="abc", source="def")
    shard = open_shard(tmp_path / "train", tokenizer="abc", source="def")
    assert isinstance(shard.tokens, np.memmap) and len(shard) == 1000
    np.testing.assert_array_equal(np.asarray(shard.tokens), tokens)
    assert path.stat().st_size == 1000 * token_dtype(vocab).itemsize
    header = json.loads((tmp_path / "train.json").read_text())
    assert header["dtype"] == token_dtype(vocab).name and header["count"] == 1000


def test_shard_rejects_other_tokenizer_source_and_truncation(tmp_path):
    write_shard(tmp_path / "s", [1, 2, 3], 10, tokenizer="t1", source="s1")
    with pytest.raises(ValueError, match="tokenizer"):
        open_shard(tmp_path / "s", tokenizer="t2")
    with pytest.raises(ValueError, match="source"):
        open_shard(tmp_path / "s", source="s2")
    with open(tmp_path / "s.bin", "ab") as file:
        file.write(b"\0")
    with pytest.raises(ValueError, match="truncated"):
        open_shard(tmp_path / "s")
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        write_shard(tmp_path / "bad", [1, 10], 10, tokenizer="t", source="s")


def test_shard_for_writes_once_and_rewrites_on_change(tmp_path):
    calls = []

    def encode(text):
        calls.append(text)
        return [ord(c) for c in text]

    first = shard_for(tmp_path / "x", "hello", encode, 256, "t")
    again = shard_for(tmp_path / "x", "hello", encode, 256, "t")
    assert len(calls) == 1 and len(first) == len(again) == 5
    changed = shard_for(tmp_path / "x", "hello!", encode, 256, "t")
    assert len(calls) == 2 and len(changed) == 6
    assert changed.header["source"] == text_checksum("hello!")


def test_tokenizer_hash_depends_on_state():
    assert tokenizer_hash({"a": [1, 2]}) == tokenizer_hash({"a": [1, 2]})
    assert tokenizer_hash({"a": [1, 2]}) != tokenizer_hash({"a": [2, 1]})


@pytest.mark.parametrize("row_len", [2, 3, 5, 8])
def test_packing_keeps_every_token_in_order(row_len):
    docs = [[1, 2, 3], [4], [5, 6, 7, 8, 9], [10, 11]]
    packed = pack_documents(docs, row_len, eot=0)
    stream = [t for d in docs for t in [*d, 0]]
    np.testing.assert_array_equal(packed.rows.reshape(-1), stream[:packed.rows.size])
    assert packed.tokens == len(stream) == packed.rows.size + packed.dropped
    assert packed.dropped < row_len
    rows = sum(-(-(len(d) + 1) // row_len) for d in docs)
    assert packed.padded_rows == rows
    assert packed.padding_tokens == rows * row_len - len(stream)
    assert 0 <= packed.padding_fraction < 1


def test_packing_with_one_token_documents_wastes_most_padding():
    packed = pack_documents([[7]] * 10, 8, eot=0)  # each doc + eot = 2 tokens in a row of 8
    assert packed.padding_fraction == pytest.approx(6 / 8)


@pytest.mark.parametrize("batch, context", [(1, 1), (4, 7), (3, 16)])
def test_sampler_windows_are_shifted_slices(batch, context):
    tokens = np.arange(100, dtype=np.uint16)
    sampler = RandomWindowSampler(tokens, batch, context, seed=1)
    x, y = sampler.next_batch()
    assert x.shape == y.shape == (batch, context) and x.dtype == torch.int64
    torch.testing.assert_close(y, x + 1)  # consecutive ids: the target is the next token
    assert (x[:, 1:] - x[:, :-1] == 1).all()
    assert int(y.max()) <= 99


def test_sampler_is_seeded_and_resumes_from_its_state():
    tokens = np.arange(1000, dtype=np.uint16)
    a = RandomWindowSampler(tokens, 4, 8, seed=3)
    b = RandomWindowSampler(tokens, 4, 8, seed=3)
    c = RandomWindowSampler(tokens, 4, 8, seed=4)
    first = a.next_batch()[0]
    torch.testing.assert_close(first, b.next_batch()[0])
    assert not torch.equal(first, c.next_batch()[0])
    state = a.state_dict()
    expected = [a.next_batch()[0] for _ in range(3)]
    d = RandomWindowSampler(tokens, 4, 8, seed=99)
    d.load_state_dict(state)
    for batch in expected:
        torch.testing.assert_close(d.next_batch()[0], batch)
    assert d.batches == a.batches == 4


def test_sampler_does_not_touch_the_global_generator():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    RandomWindowSampler(np.arange(50), 2, 4, seed=0).next_batch()
    torch.testing.assert_close(torch.rand(3), expected)


@pytest.mark.parametrize("n, context, windows", [(101, 10, 10), (100, 10, 9)])
def test_sequential_windows_cover_the_split_once(n, context, windows):
    x, y = sequential_windows(np.arange(n), context)
    assert x.shape == (windows, context)
    torch.testing.assert_close(x.reshape(-1), torch.arange(windows * context))
    torch.testing.assert_close(y, x + 1)


def test_fewer_windows_are_spread_over_the_whole_split():
    x, y = sequential_windows(np.arange(101), 10, max_windows=3)  # windows 0, 4 and 9 of 10
    torch.testing.assert_close(x[:, 0], torch.tensor([0, 40, 90]))
    torch.testing.assert_close(x, x[:, :1] + torch.arange(10))
    torch.testing.assert_close(y, x + 1)
    full, _ = sequential_windows(np.arange(101), 10, max_windows=50)  # more than there are
    assert full.shape == (10, 10)


def test_sampler_and_windows_reject_short_streams():
    with pytest.raises(ValueError, match="too few"):
        RandomWindowSampler(np.arange(5), 2, 5, seed=0)
    with pytest.raises(ValueError, match="too few"):
        sequential_windows(np.arange(5), 5)
