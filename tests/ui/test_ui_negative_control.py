"""The harness must be able to fail: with the widget manager extension disabled, a widget notebook is rejected.

Both runs use the same tiny notebook (the augmentation preview of one random image); only the lab's isolated
``page_config.json`` differs, so the healthy run proves the rejection comes from the missing widget manager.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("playwright.sync_api", reason="the UI tests need the dev extra: pip install -e '.[dev]'")

from lab_harness import (  # noqa: E402  (after the skip above)
    WIDGET_MANAGER,
    LabServer,
    UICheckFailed,
    run_notebook_with_widgets,
    write_notebook,
)

pytestmark = pytest.mark.ui

WIDGETS = ["img.rk-augment-image", ".rk-augment-erasing-p"]
CELLS = [
    "import reidkit as rk\n"
    "import numpy as np\n"
    "from reidkit.viz.augmentation import AugmentationParams, augmentation_preview",
    "image = np.random.default_rng(0).integers(0, 256, (64, 32, 3), dtype=np.uint8)\n"
    "preview, state = augmentation_preview(image, num_samples=2, params=AugmentationParams(height=64, width=32,"
    " cutout_size=16))\n"
    "preview",
]


@pytest.fixture
def lab_without_widget_manager(chromium: str, tmp_path: Path) -> Iterator[LabServer]:
    (tmp_path / "notebooks").mkdir()
    server = LabServer(root=tmp_path / "notebooks", home=tmp_path / "jupyter", disabled_extensions=(WIDGET_MANAGER,))
    try:
        server.start()
        yield server
    finally:
        server.stop()


def test_the_same_notebook_passes_with_the_widget_manager(page: Any, lab: LabServer) -> None:
    run_notebook_with_widgets(page, lab, write_notebook(lab.root, "widget_check.ipynb", CELLS), WIDGETS)


def test_the_harness_fails_without_the_widget_manager(page: Any, lab_without_widget_manager: LabServer) -> None:
    broken = lab_without_widget_manager
    with pytest.raises(UICheckFailed, match=r"not rendered|Error displaying widget|Loading widget") as failure:
        run_notebook_with_widgets(page, broken, write_notebook(broken.root, "widget_check.ipynb", CELLS), WIDGETS)
    # without a widget manager JupyterLab falls back to the widget's text repr
    assert "VBox(children=" in str(failure.value), str(failure.value)
