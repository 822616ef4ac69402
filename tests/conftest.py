"""Shared fixtures: one SynthReID ``tiny`` dataset per test session, and one intra-op torch thread."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def synthreid_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SynthReID preset ``tiny``, seed 0, written once per session (do not modify it in a test)."""
    from reidkit.data.synthetic import generate_synthreid

    root = tmp_path_factory.mktemp("synthreid") / "synthreid_tiny_s0"
    generate_synthreid(root, preset="tiny", seed=0)
    return root


@pytest.fixture(autouse=True, scope="session")
def one_intra_op_thread() -> Iterator[None]:
    """Run the tests' torch operations on one intra-op thread, restored at the end.

    The tests use tiny inputs: extra OpenMP threads buy nothing there, and on a busy 2-core machine oversubscribed
    threads made model tests 10-20x slower. One thread also fixes the order of float reductions.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
