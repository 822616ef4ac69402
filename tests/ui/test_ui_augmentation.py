"""02_augmentation in a real JupyterLab: the preview renders, and moving a slider re-renders the picture."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("playwright.sync_api", reason="the UI tests need the dev extra: pip install -e '.[dev]'")

from lab_harness import (  # noqa: E402  (after the skip above)
    assert_outputs_clean,
    copy_notebook,
    image_src,
    move_control,
    run_notebook_with_widgets,
    screenshot,
    wait_for_change,
    wait_for_idle,
    widget_output,
)

pytestmark = pytest.mark.ui

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "02_augmentation.ipynb"
IMAGE = "img.rk-augment-image"
STRENGTH = ".rk-augment-erasing-scale-max"  # "erasing max area", 0.02..1.0; the notebook leaves it at 0.40
SEEDS = ".rk-augment-seeds"
RESAMPLE = ".rk-augment-resample"


def test_augmentation_preview_follows_its_controls(
    page: Any, lab: Any, ui_artifacts: Path, docs_screenshots: Path | None
) -> None:
    relative = copy_notebook(NOTEBOOK, lab.root)
    run_notebook_with_widgets(page, lab, relative, [IMAGE, STRENGTH, SEEDS, RESAMPLE])
    output = widget_output(page, IMAGE)
    # the self-check cell after the preview set erasing p = 1 and pressed "resample" once: seeds 4-7
    assert page.locator(SEEDS).inner_text().startswith("seeds 4–7")
    assert page.locator(STRENGTH).locator(".widget-readout").inner_text().strip() == "0.40"
    docs = docs_screenshots
    screenshot(page, output, "augmentation-before", ui_artifacts, docs)

    before = image_src(page, IMAGE)
    readout = move_control(page, page.locator(STRENGTH), 0.8)  # one drag = one request to the kernel
    assert 0.7 <= float(readout) <= 0.9, f"the drag ended at {readout}"
    wait_for_change(page, IMAGE, before)
    wait_for_idle(page)
    assert page.locator(SEEDS).inner_text().startswith("seeds 4–7"), "a slider must not draw new seeds"
    assert_outputs_clean(page)
    screenshot(page, output, "augmentation-after", ui_artifacts, docs)

    after_slider = image_src(page, IMAGE)
    seeds_text = page.locator(SEEDS).inner_text().strip()
    page.locator(RESAMPLE).click()
    wait_for_change(page, SEEDS, seeds_text, attribute="text")
    assert page.locator(SEEDS).inner_text().startswith("seeds 8–11")
    wait_for_change(page, IMAGE, after_slider)
    assert_outputs_clean(page)
