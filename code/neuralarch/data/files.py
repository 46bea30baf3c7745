"""Find the book's data files, download them when absent, and verify every file's sha256.

Lookup order for the data folder: the ``root`` argument, then ``$NEURALARCH_DATA_DIR``, then the
``data/`` folder of the repository this package was installed from, then
``~/.cache/neuralarch/data``. A missing file is downloaded from ``$NEURALARCH_DATA_URL`` (default:
the repository's raw files) and kept only if its checksum matches.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

DIR_ENV = "NEURALARCH_DATA_DIR"
URL_ENV = "NEURALARCH_DATA_URL"
DEFAULT_BASE_URL = (
    "https://raw.githubusercontent.com/neural-architecture/neural-architecture/main/data/"
)

# Relative path inside the data folder -> sha256 (see data/README.md for provenance).
DATA_FILES: dict[str, str] = {
    "mnist-t10k/t10k-images-idx3-ubyte.gz":
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "mnist-t10k/t10k-labels-idx1-ubyte.gz":
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    "tinyshakespeare/input.txt":
        "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
    "sentiment-labelled-sentences/amazon_cells_labelled.txt":
        "47003fc0a0d4840b00e96e715b6189bad09e7443a3da41c4cbe12ffc79f86ae3",
    "sentiment-labelled-sentences/imdb_labelled.txt":
        "c662b9360c1652babb990d164835af12aa105db7991f1fdb19038115f0e93de8",
    "sentiment-labelled-sentences/yelp_labelled.txt":
        "b565b1eeb864d76842588c3a256731b08bcdd9faf6de507bfe211a96f8b81912",
}

_verified: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256, per process


class DataFileError(OSError):
    """A data file is missing, unreachable or corrupted; the message says how to fix it."""


def _repository_data_dir() -> Path | None:
    candidate = Path(__file__).resolve().parents[3] / "data"
    return candidate if (candidate / "README.md").is_file() else None


def data_dir(root: str | Path | None = None) -> Path:
    """Return the folder the data files are read from (see the module docstring for the order)."""
    if root is not None:
        return Path(root)
    if os.environ.get(DIR_ENV):
        return Path(os.environ[DIR_ENV])
    return _repository_data_dir() or Path.home() / ".cache" / "neuralarch" / "data"


def sha256_of(path: Path) -> str:
    """Return the hex sha256 of a file, read in chunks."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _verified:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        _verified[key] = digest.hexdigest()
    return _verified[key]


def _download(url: str, target: Path, expected: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"neuralarch: downloading {url} -> {target}", file=sys.stderr)
    handle, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".part-")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                out.write(chunk)
        actual = sha256_of(tmp)
        if actual != expected:
            raise DataFileError(
                f"downloaded {url} but its sha256 is {actual}, expected {expected}; the file was "
                f"discarded. Check ${URL_ENV} points at an unmodified copy of the book's data/."
            )
        tmp.replace(target)
    except urllib.error.URLError as error:
        raise DataFileError(
            f"could not download {url} ({error}). Put the file at {target} by hand, or set "
            f"${URL_ENV} to a reachable copy of the book's data/ folder."
        ) from None
    finally:
        tmp.unlink(missing_ok=True)


def fetch(relative: str, root: str | Path | None = None, base_url: str | None = None) -> Path:
    """Return the verified local path of a data file, downloading it first if it is absent."""
    if relative not in DATA_FILES:
        raise DataFileError(f"unknown data file {relative!r}; known files: {sorted(DATA_FILES)}")
    expected = DATA_FILES[relative]
    path = data_dir(root) / relative
    if not path.is_file():
        base = base_url or os.environ.get(URL_ENV) or DEFAULT_BASE_URL
        _download(base.rstrip("/") + "/" + relative, path, expected)
    actual = sha256_of(path)
    if actual != expected:
        raise DataFileError(
            f"{path} is corrupted or modified: sha256 {actual}, expected {expected}. Delete it "
            f"to download a fresh copy, or restore it from the repository's data/ folder."
        )
    return path
