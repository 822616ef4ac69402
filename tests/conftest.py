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


@pytest.fixture(scope="session")
def flat_colour_items(tmp_path_factory: pytest.TempPathFactory) -> list:
    """8 identities × 4 images over two cameras (64 × 32 PNGs): a flat colour per identity plus noise, so a few
    training steps separate them. Shared by the trainer and CUDA-path tests (do not modify the files)."""
    import numpy as np
    from PIL import Image

    from reidkit.data.datasets.base import ReIDItem

    folder = tmp_path_factory.mktemp("flat_colour_images")
    rng = np.random.default_rng(0)
    out = []
    for pid in range(8):
        base = rng.integers(0, 256, (1, 1, 3))
        for k in range(4):
            pixels = np.clip(base + rng.integers(-40, 40, (64, 32, 3)), 0, 255).astype(np.uint8)
            path = folder / f"{pid:04d}_c{k % 2 + 1}_{k}.png"
            Image.fromarray(pixels).save(path)
            out.append(ReIDItem(str(path), pid, k % 2))
    return out
