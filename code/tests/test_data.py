"""Tests for the shipped datasets: MNIST re-split and IDX reader, sentiment sentences, Shakespeare.

Corrupt-file tests work on copies in ``tmp_path``; the repository's ``data/`` is never modified.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from neuralarch.data import (
    DataFileError,
    MNISTSplit,
    files,
    load_mnist,
    load_sentiment,
    load_tiny_shakespeare,
    mnist,
    read_idx,
)
from neuralarch.data.files import sha256_of
from neuralarch.data.mnist import IMAGES, LABELS, SPLIT_SIZES, TRAIN_MEAN, TRAIN_STD, split_indices
from neuralarch.data.text import SENTIMENT_SOURCES, SHAKESPEARE

REPO_DATA = Path(__file__).resolve().parents[2] / "data"


@pytest.fixture(scope="module")
def raw() -> tuple[np.ndarray, np.ndarray]:
    """The 10,000 official test images and labels, read once."""
    return read_idx(REPO_DATA / IMAGES), read_idx(REPO_DATA / LABELS)


@pytest.fixture(scope="module")
def splits() -> dict[str, MNISTSplit]:
    return {name: load_mnist(name) for name in SPLIT_SIZES}


def _write_idx(path: Path, array: np.ndarray, type_code: int, compress: bool = False) -> Path:
    header = bytes([0, 0, type_code, array.ndim])
    header += b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    payload = header + array.tobytes()
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path


def _copy_with_checksum(tmp_path: Path, relative: str, monkeypatch, edit) -> Path:
    """Copy a shipped file into a tmp data root, edit it, and accept its new checksum."""
    target = tmp_path / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO_DATA / relative, target)
    edit(target)
    monkeypatch.setitem(files.DATA_FILES, relative, sha256_of(target))
    return target


# ---------------------------------------------------------------- the MNIST re-split
def test_split_sizes_shapes_and_dtypes(splits):
    for name, split in splits.items():
        assert len(split) == SPLIT_SIZES[name] and split.name == name
        assert split.images.shape == (SPLIT_SIZES[name], 1, 28, 28)
        assert split.images.dtype == torch.float32 and split.labels.dtype == torch.int64
        assert split.images.min() >= 0.0 and split.images.max() <= 1.0
        assert set(split.labels.tolist()) == set(range(10))  # labels 0..9, all present


def test_splits_are_disjoint_and_cover_all_images():
    index = split_indices()
    together = np.concatenate([index[name] for name in SPLIT_SIZES])
    assert len(together) == 10_000
    np.testing.assert_array_equal(np.sort(together), np.arange(10_000))
    for a, b in [("train", "val"), ("train", "test"), ("val", "test")]:
        assert not set(index[a]) & set(index[b])


def test_split_indices_are_fixed():
    index = split_indices()
    assert index["train"][:5].tolist() == [3577, 8925, 1634, 485, 4753]
    assert index["val"][:5].tolist() == [3545, 8124, 8713, 31, 9368]
    assert index["test"][:5].tolist() == [2652, 6738, 6008, 7594, 154]
    order = np.random.default_rng(0).permutation(10_000)  # the documented recipe
    np.testing.assert_array_equal(index["val"], order[8000:9000])


@pytest.mark.parametrize("name", list(SPLIT_SIZES))
def test_splits_equal_the_raw_files_at_their_indices(splits, raw, name):
    images, labels = raw
    index = split_indices()[name]
    expected = torch.from_numpy(images[index].astype(np.float32) / 255.0).unsqueeze(1)
    assert_close(splits[name].images, expected, rtol=0, atol=0)
    assert_close(splits[name].labels, torch.from_numpy(labels[index].astype(np.int64)))


def test_train_mean_and_std_constants_match(splits):
    train = splits["train"]
    assert train.images.mean().item() == pytest.approx(TRAIN_MEAN, abs=1e-4)
    assert train.images.std().item() == pytest.approx(TRAIN_STD, abs=1e-4)
    normalized = train.normalized()
    assert normalized.mean().item() == pytest.approx(0.0, abs=1e-3)
    assert normalized.std().item() == pytest.approx(1.0, abs=1e-3)


def test_dataset_pairs_images_and_labels(splits):
    val = splits["val"]
    x, y = val.dataset()[3]
    assert_close(x, val.normalized()[3])
    assert y == val.labels[3]
    raw_x, _ = val.dataset(normalize=False)[3]
    assert_close(raw_x, val.images[3])


@pytest.mark.parametrize("limit", [1, 10, 257])
def test_limit_keeps_a_fixed_prefix(splits, limit):
    small = load_mnist("val", limit=limit)
    assert len(small) == limit
    assert_close(small.images, splits["val"].images[:limit])
    assert_close(small.labels, splits["val"].labels[:limit])


@pytest.mark.parametrize("bad", ["training", "Train", "", "validation"])
def test_bad_split_name_is_rejected(bad):
    with pytest.raises(ValueError, match=r"split must be one of \['train', 'val', 'test'\]"):
        load_mnist(bad)


# ---------------------------------------------------------------- the IDX reader
@pytest.mark.parametrize("dtype,code", [(np.uint8, 0x08), (np.int8, 0x09), (">i2", 0x0B),
                                        (">i4", 0x0C), (">f4", 0x0D), (">f8", 0x0E)])
@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 4)])
@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trips(tmp_path, dtype, code, shape, compress):
    array = (np.arange(np.prod(shape)) % 100).astype(dtype).reshape(shape)
    path = _write_idx(tmp_path / ("a.idx.gz" if compress else "a.idx"), array, code, compress)
    result = read_idx(path)
    assert result.shape == shape and result.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(result, array)


def test_read_idx_rejects_a_malformed_header(tmp_path):
    path = tmp_path / "bad.idx"
    path.write_bytes(b"\x01\x00\x08\x01" + (3).to_bytes(4, "big") + b"abc")
    with pytest.raises(DataFileError, match=r"is not an IDX file: its header starts '01000801'"):
        read_idx(path)


def test_read_idx_rejects_a_bad_type_code(tmp_path):
    path = _write_idx(tmp_path / "bad.idx", np.zeros(3, np.uint8), type_code=0x07)
    with pytest.raises(DataFileError, match=r"type code in \[8, 9, 11, 12, 13, 14\]"):
        read_idx(path)


def test_read_idx_rejects_a_too_short_file(tmp_path):
    path = tmp_path / "tiny.idx"
    path.write_bytes(b"\x00\x00")
    with pytest.raises(DataFileError, match="is not an IDX file"):
        read_idx(path)


@pytest.mark.parametrize("payload,message", [
    (b"\x00\x00\x08\x03" + (2).to_bytes(4, "big"), "declares 3 dimensions but is truncated"),
    (b"\x00\x00\x08\x00", "declares 0 dimensions"),
])
def test_read_idx_rejects_a_truncated_header(tmp_path, payload, message):
    path = tmp_path / "short.idx"
    path.write_bytes(payload)
    with pytest.raises(DataFileError, match=message):
        read_idx(path)


def test_read_idx_rejects_a_truncated_body(tmp_path):
    path = _write_idx(tmp_path / "cut.idx", np.zeros((4, 6), np.uint8), 0x08)
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(DataFileError, match=r"declares shape \(4, 6\) \(36 bytes\) but the file "
                                            r"has 31 bytes"):
        read_idx(path)


def test_read_idx_reports_unreadable_files(tmp_path):
    with pytest.raises(DataFileError, match="cannot read IDX file"):
        read_idx(tmp_path / "missing.idx")
    broken = tmp_path / "broken.idx.gz"
    broken.write_bytes(b"this is not gzip data")
    with pytest.raises(DataFileError, match="cannot read IDX file"):
        read_idx(broken)


def test_load_mnist_reports_a_truncated_shipped_file(tmp_path, monkeypatch):
    def truncate(path: Path) -> None:
        data = gzip.decompress(path.read_bytes())
        path.write_bytes(gzip.compress(data[:-784], compresslevel=1))  # one image short

    _copy_with_checksum(tmp_path, IMAGES, monkeypatch, truncate)
    shutil.copytree(REPO_DATA / "mnist-t10k", tmp_path / "mnist-t10k", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("t10k-images*"))
    with pytest.raises(DataFileError, match="truncated"):
        load_mnist("val", root=tmp_path)


def test_load_mnist_rejects_a_file_with_the_wrong_shape(tmp_path, monkeypatch):
    def replace(path: Path) -> None:
        _write_idx(path, np.zeros((10, 28, 28), np.uint8), 0x08, compress=True)

    _copy_with_checksum(tmp_path, IMAGES, monkeypatch, replace)
    shutil.copy(REPO_DATA / LABELS, tmp_path / LABELS)
    with pytest.raises(DataFileError, match=r"unexpected MNIST shapes \(10, 28, 28\)"):
        load_mnist("train", root=tmp_path)


def test_load_mnist_refuses_a_corrupted_copy(tmp_path):
    target = tmp_path / LABELS
    target.parent.mkdir(parents=True)
    target.write_bytes((REPO_DATA / LABELS).read_bytes()[:-1])
    shutil.copy(REPO_DATA / IMAGES, tmp_path / IMAGES)
    with pytest.raises(DataFileError, match="corrupted or modified"):
        load_mnist("test", root=tmp_path)


def test_module_constants_are_consistent():
    assert sum(SPLIT_SIZES.values()) == 10_000
    assert mnist.SPLIT_SEED == 0


# ---------------------------------------------------------------- text corpora
def test_sentiment_has_3000_balanced_sentences():
    sentences = load_sentiment()
    assert len(sentences) == 3000
    assert sum(s.label for s in sentences) == 1500
    for source in SENTIMENT_SOURCES:
        mine = [s for s in sentences if s.source == source]
        assert len(mine) == 1000 and sum(s.label for s in mine) == 500
    assert all(s.text and s.text == s.text.strip() and s.label in (0, 1) for s in sentences)
    assert sentences[0].source == "amazon_cells"  # file order, sources in the order given


def test_sentiment_subset_of_sources_keeps_the_order_given():
    sentences = load_sentiment(sources=("yelp", "imdb"))
    assert len(sentences) == 2000
    assert [sentences[0].source, sentences[-1].source] == ["yelp", "imdb"]


@pytest.mark.parametrize("bad", ["twitter", "amazon", "IMDB"])
def test_sentiment_rejects_an_unknown_source(bad):
    with pytest.raises(ValueError, match=f"unknown sentiment source '{bad}'"):
        load_sentiment(sources=(bad,))


@pytest.mark.parametrize("line", ["no label at all", "a sentence\t2", "\t1", "text\tpositive"])
def test_sentiment_malformed_line_is_a_clear_error(tmp_path, monkeypatch, line):
    relative = "sentiment-labelled-sentences/yelp_labelled.txt"

    def corrupt(path: Path) -> None:
        lines = path.read_text(encoding="utf-8").splitlines()
        lines[4] = line
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    _copy_with_checksum(tmp_path, relative, monkeypatch, corrupt)
    with pytest.raises(DataFileError, match=r"yelp_labelled.txt:5: expected 'sentence<TAB>0\|1'"):
        load_sentiment(root=tmp_path, sources=("yelp",))


def test_sentiment_skips_blank_lines(tmp_path, monkeypatch):
    relative = "sentiment-labelled-sentences/imdb_labelled.txt"

    def add_blanks(path: Path) -> None:
        path.write_text("\n\n" + path.read_text(encoding="utf-8") + "\n  \n", encoding="utf-8")

    _copy_with_checksum(tmp_path, relative, monkeypatch, add_blanks)
    assert len(load_sentiment(root=tmp_path, sources=("imdb",))) == 1000


def test_tiny_shakespeare_length_and_start():
    text = load_tiny_shakespeare()
    assert len(text) == 1_115_394
    assert text.startswith("First Citizen:")
    assert (REPO_DATA / SHAKESPEARE).stat().st_size == len(text.encode("utf-8"))
