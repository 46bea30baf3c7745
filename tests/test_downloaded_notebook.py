"""A reader's notebook runs on its own: outside the repository, data fetched over HTTP."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbclient
import nbformat
import pytest
from conftest import ROOT

from neuralarch.data.files import DATA_FILES, DIR_ENV, URL_ENV, sha256_of
from neuralarch.data.mirror import serve_folder

# The reproducibility lesson trains on MNIST, so it exercises the data download path.
NOTEBOOK = "book/m01-pytorch-foundations/05-reproducible-experiments.ipynb"


def test_downloaded_notebook_runs_in_an_empty_directory(html, tmp_path, monkeypatch):
    workdir = tmp_path / "reader"  # outside the repository, empty but for the notebook
    workdir.mkdir()
    notebook_path = workdir / Path(NOTEBOOK).name
    shutil.copy(html / "_notebooks" / NOTEBOOK, notebook_path)
    cache = tmp_path / "data-cache"
    monkeypatch.setenv(DIR_ENV, str(cache))
    with serve_folder(ROOT / "data") as url:
        monkeypatch.setenv(URL_ENV, url)
        notebook = nbformat.read(notebook_path, as_version=4)
        client = nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                                         resources={"metadata": {"path": str(workdir)}})
        try:
            client.execute()
        except nbclient.exceptions.CellExecutionError as error:
            pytest.fail(f"the downloaded notebook failed:\n{error}")
    downloaded = sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*") if p.is_file())
    assert "mnist-t10k/t10k-images-idx3-ubyte.gz" in downloaded
    for relative in downloaded:
        assert sha256_of(cache / relative) == DATA_FILES[relative]
    assert not any(str(ROOT) in str(p) for p in workdir.rglob("*"))
