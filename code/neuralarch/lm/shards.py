"""Tokenised shards on disk, document packing, and a seeded random-window batch sampler.

Introduced in lesson 6.5 (``m06-l05``). A pre-training corpus is tokenised once and written to
disk as a flat array of token ids (a *shard*): ``uint16`` when the vocabulary fits in 65,536
ids, else ``uint32``, next to a small JSON header that records the dtype, the token count, a
hash of the tokenizer and a checksum of the source text. Training then memory-maps the shard
(``np.memmap``): the operating system pages in only the windows a batch touches, so a corpus far
larger than RAM costs no more memory than a small one, and a changed tokenizer or source text
is detected instead of silently training on stale ids.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neuralarch.repro import check_seed

FORMAT = "neuralarch-shard/1"


def text_checksum(text: str) -> str:
    """Return the sha256 of ``text`` (UTF-8), the source checksum a shard header records."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def tokenizer_hash(tokenizer_state: Mapping[str, Any]) -> str:
    """Return a 16-hex-digit hash of a tokenizer's JSON-serialisable state (its ``to_dict()``)."""
    blob = json.dumps(tokenizer_state, sort_keys=True, default=list)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def token_dtype(vocab_size: int) -> np.dtype:
    """Return the smallest unsigned dtype that holds ids ``0 .. vocab_size - 1``."""
    if vocab_size < 1:
        raise ValueError(f"vocab_size must be >= 1, got {vocab_size}")
    if vocab_size <= 2**16:
        return np.dtype(np.uint16)
    if vocab_size <= 2**32:
        return np.dtype(np.uint32)
    raise ValueError(f"vocab_size={vocab_size} does not fit in uint32 token ids")


@dataclass(frozen=True)
class Shard:
    """A memory-mapped shard: ``tokens`` is a read-only 1-D array view of the file."""

    tokens: np.memmap  # (N,) uint16 or uint32
    header: dict[str, Any]
    path: Path

    def __len__(self) -> int:
        return int(self.header["count"])


def _paths(path: str | Path) -> tuple[Path, Path]:
    path = Path(path)
    return path.with_suffix(".bin"), path.with_suffix(".json")


def write_shard(path: str | Path, tokens: Sequence[int] | np.ndarray, vocab_size: int, *,
                tokenizer: str, source: str) -> Path:
    """Write ``tokens`` to ``path`` (``.bin`` data, ``.json`` header); return the ``.bin`` path.

    ``tokenizer`` is a hash of the tokenizer (:func:`tokenizer_hash`) and ``source`` a checksum
    of the text it encoded (:func:`text_checksum`); :func:`open_shard` checks them.
    """
    dtype = token_dtype(vocab_size)
    array = np.asarray(tokens, dtype=np.int64)  # (N,)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"tokens must be a non-empty 1-D sequence, got shape {array.shape}")
    if array.min() < 0 or array.max() >= vocab_size:
        raise ValueError(f"token ids must lie in [0, {vocab_size}), found "
                         f"[{array.min()}, {array.max()}]")
    bin_path, json_path = _paths(path)
    bin_path.parent.mkdir(parents=True, exist_ok=True)
    partial = bin_path.with_name(bin_path.name + ".partial")
    array.astype(dtype).tofile(partial)
    header = {"format": FORMAT, "dtype": dtype.name, "count": int(array.size),
              "vocab_size": int(vocab_size), "tokenizer": tokenizer, "source": source}
    json_path.write_text(json.dumps(header, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    partial.replace(bin_path)  # the data appears last, complete, so a reader never sees half
    return bin_path


def open_shard(path: str | Path, *, tokenizer: str | None = None,
               source: str | None = None) -> Shard:
    """Memory-map a shard written by :func:`write_shard`, checking its header and size.

    Passing ``tokenizer`` or ``source`` checks that the shard was made by that tokenizer from
    that text; a mismatch raises ``ValueError`` (re-tokenise instead of training on stale ids).
    """
    bin_path, json_path = _paths(path)
    if not bin_path.is_file() or not json_path.is_file():
        raise FileNotFoundError(f"shard {bin_path} or its header {json_path} does not exist")
    header = json.loads(json_path.read_text(encoding="utf-8"))
    if header.get("format") != FORMAT:
        raise ValueError(f"{json_path} is not a shard header (format {header.get('format')!r})")
    for name, expected in (("tokenizer", tokenizer), ("source", source)):
        if expected is not None and header[name] != expected:
            raise ValueError(f"shard {bin_path} was written with {name} {header[name]}, "
                             f"expected {expected}; delete it and write it again")
    dtype = np.dtype(header["dtype"])
    size = bin_path.stat().st_size
    if size != header["count"] * dtype.itemsize:
        raise ValueError(f"shard {bin_path} holds {size} bytes, its header promises "
                         f"{header['count']} tokens of {dtype.itemsize} bytes (truncated?)")
    tokens = np.memmap(bin_path, dtype=dtype, mode="r", shape=(header["count"],))
    return Shard(tokens, header, bin_path)


def shard_for(path: str | Path, text: str, encode, vocab_size: int,
              tokenizer: str) -> Shard:
    """Open the shard of ``text`` at ``path``, writing it with ``encode(text)`` first if needed.

    A shard whose header names another tokenizer or source text is rewritten.
    """
    source = text_checksum(text)
    try:
        return open_shard(path, tokenizer=tokenizer, source=source)
    except (FileNotFoundError, ValueError):
        write_shard(path, encode(text), vocab_size, tokenizer=tokenizer, source=source)
        return open_shard(path, tokenizer=tokenizer, source=source)


@dataclass(frozen=True)
class Packing:
    """Rows of packed documents and what packing saved compared with padding."""

    rows: np.ndarray  # (rows, row_len) int64 token ids
    tokens: int  # document tokens (plus separators) in the stream
    dropped: int  # tokens of the final, incomplete row that packing leaves out
    padded_rows: int  # rows that padding every document to whole rows would need
    padding_tokens: int  # pad tokens those rows would hold

    @property
    def padding_fraction(self) -> float:
        """Fraction of the padded layout's slots that would hold padding, not text."""
        return self.padding_tokens / (self.padded_rows * self.rows.shape[1])


def pack_documents(documents: Sequence[Sequence[int]], row_len: int, eot: int) -> Packing:
    """Join documents with the separator ``eot`` and cut the stream into rows of ``row_len``.

    Every slot of a packed row holds a real token; a document may continue into the next row.
    For comparison, the padded layout starts each document (with its separator) on a new row
    and fills the rest of its last row with padding; :class:`Packing` counts that waste.
    """
    if row_len < 2:
        raise ValueError(f"row_len must be >= 2, got {row_len}")
    if not documents:
        raise ValueError("documents is empty")
    stream: list[int] = []
    padded_rows = 0
    for document in documents:
        stream.extend(document)
        stream.append(eot)
        padded_rows += -(-(len(document) + 1) // row_len)  # ceil: rows this document needs
    n_rows = len(stream) // row_len
    rows = np.asarray(stream[:n_rows * row_len], dtype=np.int64).reshape(n_rows, row_len)
    return Packing(rows, len(stream), len(stream) - n_rows * row_len, padded_rows,
                   padded_rows * row_len - len(stream))


class RandomWindowSampler:
    """Draw batches of random windows ``x = s[i : i + T]``, ``y = s[i + 1 : i + T + 1]``.

    The start positions come from a private, seeded ``torch.Generator``, so the data order is
    reproducible and does not disturb (or depend on) the global random streams; its state
    (:meth:`state_dict`) is what a checkpoint must save to resume the data exactly.
    """

    def __init__(self, tokens: np.ndarray, batch_size: int, context: int, seed: int) -> None:
        if tokens.ndim != 1:
            raise ValueError(f"tokens must be 1-D, got shape {tokens.shape}")
        if batch_size < 1 or context < 1:
            raise ValueError(f"batch_size and context must be >= 1, got {batch_size}, {context}")
        if len(tokens) < context + 1:
            raise ValueError(f"{len(tokens)} tokens are too few for windows of {context} + 1")
        self.tokens = tokens
        self.batch_size = batch_size
        self.context = context
        self.generator = torch.Generator().manual_seed(check_seed(seed))
        self.batches = 0  # batches drawn so far
        self._offsets = np.arange(context + 1)  # (T + 1,)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Return inputs and next-token targets, both (B, T) int64."""
        starts = torch.randint(len(self.tokens) - self.context, (self.batch_size,),
                               generator=self.generator).numpy()  # (B,)
        windows = np.asarray(self.tokens[starts[:, None] + self._offsets], dtype=np.int64)
        windows = torch.from_numpy(windows)  # (B, T + 1)
        self.batches += 1
        return windows[:, :-1], windows[:, 1:]

    def state_dict(self) -> dict[str, Any]:
        """Return the generator state and the batch count."""
        return {"generator": self.generator.get_state(), "batches": self.batches}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a state returned by :meth:`state_dict`."""
        self.generator.set_state(state["generator"])
        self.batches = int(state["batches"])


def sequential_windows(tokens: np.ndarray, context: int,
                       max_windows: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut ``tokens`` into non-overlapping windows of ``context``: inputs and targets (N, T).

    Used for validation: every token of the split is predicted exactly once, in a fixed order.
    With ``max_windows`` fewer than the split holds, that many windows are taken evenly spaced
    over the whole split (not its beginning), so a quick validation estimates the full one.
    """
    n = (len(tokens) - 1) // context
    if n < 1:
        raise ValueError(f"{len(tokens)} tokens are too few for one window of {context} + 1")
    chosen = np.arange(n)
    if max_windows is not None and max_windows < n:
        chosen = np.linspace(0, n - 1, max_windows).round().astype(np.int64)
    rows = chosen[:, None] * context + np.arange(context + 1)  # (N, T + 1) token positions
    windows = torch.from_numpy(np.asarray(tokens, dtype=np.int64)[rows])
    return windows[:, :-1], windows[:, 1:]
