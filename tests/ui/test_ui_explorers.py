"""50_visualisation in a real JupyterLab: the retrieval browser and the heatmap explorer follow their main control.

The notebook runs top to bottom on a throw-away copy (it trains the small ``synth_quick`` model in CI mode); its
self-check cells leave the browser on the worst query with re-ranking and the explorer on LayerCAM with the
triplet target, which is where the tests start.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("playwright.sync_api", reason="the UI tests need the dev extra: pip install -e '.[dev]'")

from lab_harness import (  # noqa: E402  (after the skip above)
    VIEWPORT,
    LabServer,
    assert_outputs_clean,
    copy_notebook,
    image_src,
    move_control,
    run_notebook_with_widgets,
    screenshot,
    slider_readout,
    wait_for_change,
    wait_for_idle,
    widget_output,
)

pytestmark = pytest.mark.ui

RETRIEVAL = {name: f".rk-retrieval-{name}" for name in ("query", "k", "metric", "rerank", "label")}
RETRIEVAL["image"] = "img.rk-retrieval-image"
HEATMAP = {name: f".rk-heatmap-{name}" for name in ("query", "gallery", "method", "layer", "target", "label")}
HEATMAP["image"] = "img.rk-heatmap-image"

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "50_visualisation.ipynb"


@pytest.fixture(scope="module")
def explorers(browser: Any, lab: LabServer, ui_artifacts: Path) -> Iterator[Any]:
    """One page with 50_visualisation run to the end (both tests share it: one kernel start, one run)."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(60_000)
    page = context.new_page()
    try:
        notebook = copy_notebook(NOTEBOOK, lab.root)
        widgets = [RETRIEVAL["image"], RETRIEVAL["query"], HEATMAP["image"], HEATMAP["method"]]
        try:
            run_notebook_with_widgets(page, lab, notebook, widgets)
        except Exception:
            page.screenshot(path=str(ui_artifacts / "50_visualisation-failure.png"))
            raise
        yield page
    finally:
        try:
            context.close()
        finally:
            lab.shutdown_sessions()


def label_text(page: Any, selector: str) -> str:
    return page.locator(selector).first.inner_text().strip()


def test_retrieval_browser_follows_the_query_picker(
    explorers: Any, ui_artifacts: Path, docs_screenshots: Path | None
) -> None:
    page, docs = explorers, docs_screenshots
    query = page.locator(RETRIEVAL["query"])
    output = widget_output(page, RETRIEVAL["image"])
    label = label_text(page, RETRIEVAL["label"])
    shown = re.match(r"query (\d+): id \d+, camera c\d+ \| cosine \+ re-ranking \| AP \d\.\d{3}", label)
    assert shown, label
    assert shown.group(1) == slider_readout(query), "the label and the query slider disagree"
    screenshot(page, output, "retrieval-before", ui_artifacts, docs, max_width=800, colors=128)

    before = image_src(page, RETRIEVAL["image"])
    picked = move_control(page, query, 0.2)
    assert picked != shown.group(1), f"the query slider did not move (readout {picked!r})"
    new_label = wait_for_change(page, RETRIEVAL["label"], label, attribute="text")
    assert new_label.startswith(f"query {picked}:"), f"slider shows query {picked}, the kernel drew {new_label!r}"
    wait_for_change(page, RETRIEVAL["image"], before)  # the picture is sent before the label: already there
    wait_for_idle(page)
    assert_outputs_clean(page)
    screenshot(page, output, "retrieval-after", ui_artifacts, docs, max_width=800, colors=128)


def test_heatmap_explorer_follows_the_method_picker(
    explorers: Any, ui_artifacts: Path, docs_screenshots: Path | None
) -> None:
    page, docs = explorers, docs_screenshots
    output = widget_output(page, HEATMAP["image"])
    label = label_text(page, HEATMAP["label"])
    assert " layercam on " in label and "target: triplet" in label, label
    screenshot(page, output, "heatmap-before", ui_artifacts, docs, max_width=800, colors=128)

    before = image_src(page, HEATMAP["image"])
    method = move_control(page, page.locator(HEATMAP["method"]))
    assert method != "layercam"
    new_label = wait_for_change(page, HEATMAP["label"], label, attribute="text")
    assert f" {method} on " in new_label, f"picked {method!r}, the kernel drew {new_label!r}"
    wait_for_change(page, HEATMAP["image"], before)
    wait_for_idle(page)
    assert_outputs_clean(page)
    screenshot(page, output, "heatmap-after", ui_artifacts, docs, max_width=800, colors=128)
