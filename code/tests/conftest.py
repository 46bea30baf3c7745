"""Shared test set-up for the package tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """The tests use tiny tensors: one intra-op thread is faster than several fighting over a
    shared CPU, and gives the same bits on every machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
