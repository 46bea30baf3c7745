"""Data for the book: shipped real datasets (checksum-verified) and deterministic generators."""

from neuralarch.data.files import DATA_FILES, DataFileError, data_dir, fetch
from neuralarch.data.market import MarketData, generate_market
from neuralarch.data.mnist import MNISTSplit, load_mnist, read_idx
from neuralarch.data.text import load_sentiment, load_tiny_shakespeare

__all__ = [
    "DATA_FILES",
    "DataFileError",
    "MNISTSplit",
    "MarketData",
    "data_dir",
    "fetch",
    "generate_market",
    "load_mnist",
    "load_sentiment",
    "load_tiny_shakespeare",
    "read_idx",
]
