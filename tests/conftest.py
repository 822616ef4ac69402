"""Shared fixtures: one SynthReID ``tiny`` dataset generated once per test session."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def synthreid_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SynthReID preset ``tiny``, seed 0, written once per session (do not modify it in a test)."""
    from reidkit.data.synthetic import generate_synthreid

    root = tmp_path_factory.mktemp("synthreid") / "synthreid_tiny_s0"
    generate_synthreid(root, preset="tiny", seed=0)
    return root
