"""Every notebook that shows a live widget has a browser test (a static check: no browser, not marked ``ui``)."""
from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
NOTEBOOKS = HERE.parents[1] / "notebooks"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
#: notebook -> the browser test that drives its widgets
BROWSER_TESTS: dict[str, str] = {
    "02_augmentation.ipynb": "test_ui_augmentation.py",
    "50_visualisation.ipynb": "test_ui_explorers.py",
}


def shows_widgets(path: Path) -> bool:
    cells = json.loads(path.read_text())["cells"]
    return any(WIDGET_MIME in output.get("data", {}) for cell in cells for output in cell.get("outputs", []))


def test_every_widget_notebook_has_a_browser_test() -> None:
    with_widgets = {path.name for path in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb") if shows_widgets(path)}
    assert "02_augmentation.ipynb" in with_widgets  # the check itself sees widget outputs
    untested = sorted(with_widgets - set(BROWSER_TESTS))
    assert not untested, f"add a test in tests/ui for the widgets of {untested} and list it in BROWSER_TESTS"
    for test_file in BROWSER_TESTS.values():
        assert (HERE / test_file).is_file(), test_file
