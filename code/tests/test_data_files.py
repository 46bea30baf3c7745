"""The data-file layer: lookup order, checksum verification, and downloads from a mirror."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from neuralarch.data import files
from neuralarch.data.files import DATA_FILES, DataFileError, data_dir, fetch, sha256_of
from neuralarch.data.mirror import serve_folder

REPO_DATA = Path(__file__).resolve().parents[2] / "data"
LABELS = "mnist-t10k/t10k-labels-idx1-ubyte.gz"


@pytest.fixture
def mirror(tmp_path: Path):
    """A copy of the repository's data folder served over HTTP on 127.0.0.1."""
    folder = tmp_path / "mirror"
    shutil.copytree(REPO_DATA, folder)
    with serve_folder(folder) as url:
        yield folder, url


def test_checksums_match_the_shipped_files():
    for relative, expected in DATA_FILES.items():
        assert sha256_of(REPO_DATA / relative) == expected, relative


def test_checksums_match_the_sha256sums_file():
    listed = dict(
        reversed(line.split()) for line in (REPO_DATA / "SHA256SUMS").read_text().splitlines()
    )
    for relative, expected in DATA_FILES.items():
        assert listed[relative] == expected


def test_lookup_order(tmp_path, monkeypatch):
    monkeypatch.delenv(files.DIR_ENV, raising=False)
    assert data_dir() == REPO_DATA  # installed from the repository: its data/ folder
    monkeypatch.setenv(files.DIR_ENV, str(tmp_path / "env"))
    assert data_dir() == tmp_path / "env"
    assert data_dir(tmp_path / "arg") == tmp_path / "arg"  # explicit argument wins


def test_lookup_falls_back_to_user_cache(monkeypatch, tmp_path):
    monkeypatch.delenv(files.DIR_ENV, raising=False)
    monkeypatch.setattr(files, "_repository_data_dir", lambda: None)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert data_dir() == tmp_path / ".cache" / "neuralarch" / "data"


def test_fetch_local_file_is_verified():
    assert fetch(LABELS) == REPO_DATA / LABELS


def test_unknown_file_is_rejected():
    with pytest.raises(DataFileError, match="unknown data file"):
        fetch("mnist-t10k/train-images.gz")


def test_corrupted_local_file_names_the_file_and_the_fix(tmp_path):
    target = tmp_path / LABELS
    target.parent.mkdir(parents=True)
    data = bytearray((REPO_DATA / LABELS).read_bytes())
    data[100] ^= 0xFF  # one flipped byte
    target.write_bytes(bytes(data))
    with pytest.raises(DataFileError, match=r"corrupted or modified.*Delete it") as error:
        fetch(LABELS, root=tmp_path)
    assert str(target) in str(error.value)


def test_missing_file_is_downloaded_from_the_mirror_and_verified(mirror, tmp_path, capsys):
    _, url = mirror
    root = tmp_path / "cache"
    path = fetch(LABELS, root=root, base_url=url)
    assert path == root / LABELS
    assert sha256_of(path) == DATA_FILES[LABELS]
    assert "downloading" in capsys.readouterr().err
    assert fetch(LABELS, root=root, base_url="http://127.0.0.1:9/unused/") == path  # now local


def test_download_url_comes_from_the_environment(mirror, tmp_path, monkeypatch):
    _, url = mirror
    monkeypatch.setenv(files.URL_ENV, url)
    assert fetch(LABELS, root=tmp_path).is_file()


def test_corrupted_download_is_rejected_and_nothing_is_kept(mirror, tmp_path):
    folder, url = mirror
    (folder / LABELS).write_bytes(b"not the MNIST labels")
    root = tmp_path / "cache"
    with pytest.raises(DataFileError, match=r"sha256 is .* expected .*discarded"):
        fetch(LABELS, root=root, base_url=url)
    assert not (root / LABELS).exists()
    assert list((root / "mnist-t10k").iterdir()) == []  # no partial download left behind


def test_missing_file_on_the_mirror_is_a_clear_error(mirror, tmp_path):
    folder, url = mirror
    (folder / LABELS).unlink()
    with pytest.raises(DataFileError, match=r"could not download .*404.*NEURALARCH_DATA_URL"):
        fetch(LABELS, root=tmp_path, base_url=url)
    assert not (tmp_path / LABELS).exists()


def test_serving_a_missing_folder_fails(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a directory"), \
            serve_folder(tmp_path / "absent"):
        pass
