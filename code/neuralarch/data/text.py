"""The shipped text corpora: tiny Shakespeare and the labelled sentiment sentences."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from neuralarch.data.files import DataFileError, fetch

SHAKESPEARE = "tinyshakespeare/input.txt"
SENTIMENT_SOURCES = ("amazon_cells", "imdb", "yelp")


def load_tiny_shakespeare(root: str | Path | None = None) -> str:
    """Return the 1,115,394-character tiny-Shakespeare corpus as one string."""
    return fetch(SHAKESPEARE, root).read_text(encoding="utf-8")


@dataclass(frozen=True)
class Sentence:
    """One labelled review sentence; ``label`` is 1 for positive and 0 for negative."""

    text: str
    label: int
    source: str


def load_sentiment(root: str | Path | None = None,
                   sources: tuple[str, ...] = SENTIMENT_SOURCES) -> list[Sentence]:
    """Return the labelled sentences of the chosen sources (3 × 1,000 by default), file order."""
    sentences = []
    for source in sources:
        if source not in SENTIMENT_SOURCES:
            raise ValueError(f"unknown sentiment source {source!r}; use {SENTIMENT_SOURCES}")
        path = fetch(f"sentiment-labelled-sentences/{source}_labelled.txt", root)
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            text, _, label = line.rpartition("\t")
            if label.strip() not in ("0", "1") or not text:
                raise DataFileError(f"{path}:{number}: expected 'sentence<TAB>0|1', got {line!r}")
            sentences.append(Sentence(text.strip(), int(label), source))
    return sentences
