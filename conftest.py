"""Root pytest configuration: the CI environment for notebook kernels and nbval's comparison rules.

Environment variables set here reach every notebook kernel, because jupyter_client copies
``os.environ`` when it starts one (see ``reidkit.devtools.notebooks.CI_ENVIRONMENT``).
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from reidkit.devtools.notebooks import apply_ci_environment

apply_ci_environment()

NOTEBOOKS_META = Path(__file__).parent / "notebooks" / "notebooks.yml"


def _notebook_meta() -> dict:
    with NOTEBOOKS_META.open() as fh:
        return yaml.safe_load(fh)["notebooks"]


def pytest_collectstart(collector: pytest.Collector) -> None:
    # Widget views carry random model ids; nbval already skips them, this keeps it explicit.
    if collector.fspath and str(collector.fspath).endswith(".ipynb"):
        skip = getattr(collector, "skip_compare", None)
        if skip is not None and "application/vnd.jupyter.widget-view+json" not in skip:
            collector.skip_compare = (*skip, "application/vnd.jupyter.widget-view+json")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    meta = _notebook_meta()
    for item in items:
        path = Path(str(item.fspath))
        if path.suffix != ".ipynb":
            continue
        entry = meta.get(path.name)
        if entry is None:
            raise pytest.UsageError(f"{path.name} is not listed in {NOTEBOOKS_META}")
        if entry.get("needs_gpu") and not torch.cuda.is_available():
            item.add_marker(pytest.mark.skip(reason=f"{path.name} needs a CUDA GPU"))
