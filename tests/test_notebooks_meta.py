"""Notebook hygiene: what nbval cannot check about the stored notebooks themselves."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))
META = yaml.safe_load((NOTEBOOKS / "notebooks.yml").read_text())["notebooks"]
IGNORE_MARK = "# NBVAL_IGNORE_OUTPUT"


def code_cells(path: Path) -> list[dict]:
    nb = json.loads(path.read_text())
    return [c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]


def test_every_notebook_is_listed_and_named_in_reading_order() -> None:
    assert {p.name for p in PATHS} == set(META)
    for path in PATHS:
        assert re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", path.name), path.name
        assert META[path.name]["tier"] in ("A", "B")
        assert 0 < META[path.name]["budget_s"] <= 120


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_notebook_imports_the_package_and_defines_nothing_reusable(path: Path) -> None:
    cells = code_cells(path)
    assert "".join(cells[0]["source"]).startswith("import reidkit as rk")
    for cell in cells:
        src = "".join(cell["source"])
        assert not re.search(r"^(def|class) ", src, flags=re.M), f"{path.name}: move reusable code into reidkit"
        assert "sys.path" not in src


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_stored_outputs_are_one_clean_run(path: Path) -> None:
    cells = code_cells(path)
    counts = [c["execution_count"] for c in cells]
    if META[path.name]["tier"] == "A":
        assert counts == list(range(1, len(cells) + 1)), f"{path.name}: regenerate with `reidkit notebooks`"
    text = json.dumps([c["outputs"] for c in cells])
    assert "Traceback" not in text
    assert not re.search(r"(/work/|/home/|/Users/|/tmp/)", text), f"{path.name}: absolute path in outputs"


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_only_widget_and_timing_cells_are_exempt_from_comparison(path: Path) -> None:
    exempt = [c for c in code_cells(path) if "".join(c["source"]).lstrip().startswith(IGNORE_MARK)]
    assert len(exempt) <= 2
    for cell in exempt:
        source = "".join(cell["source"])
        shows_widget = "preview" in source or "widget" in source.lower()
        shows_timing = "perf_counter" in source
        assert shows_widget or shows_timing, f"{path.name}: only live widgets and timings may skip comparison"
