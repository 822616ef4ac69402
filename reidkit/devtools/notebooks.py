"""Regenerate the stored outputs of the notebooks: the one command behind ``reidkit notebooks``.

Strict nbval compares fresh outputs with the stored ones, so stored outputs must come from the same
environment CI uses: CPU, ``REIDKIT_FAST=1``, wandb disabled, no progress bars, one thread. This runs
each notebook top to bottom in a fresh kernel with that environment and writes it back in place.
"""
from __future__ import annotations

import os
from pathlib import Path

# The environment every notebook kernel gets, in tests (conftest.py) and when regenerating outputs.
CI_ENVIRONMENT: dict[str, str] = {
    "REIDKIT_FAST": "1",
    "WANDB_MODE": "disabled",
    "WANDB_SILENT": "true",
    "TQDM_DISABLE": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
    "PYTHONHASHSEED": "0",
    "CUDA_VISIBLE_DEVICES": "",
}


# Set to 1 on a GPU machine to keep CUDA visible to the tests (tests/test_cuda_paths.py and the other CUDA
# tests); the notebooks' stored outputs are CPU outputs, so run only ``tests/`` that way.
KEEP_CUDA_VARIABLE = "REIDKIT_TEST_CUDA"


def apply_ci_environment() -> None:
    """Set :data:`CI_ENVIRONMENT` in ``os.environ`` (kernels inherit it) and drop ``MPLBACKEND``.

    ``CUDA_VISIBLE_DEVICES`` stays as it is when ``REIDKIT_TEST_CUDA=1``.
    """
    environment = dict(CI_ENVIRONMENT)
    if os.environ.get(KEEP_CUDA_VARIABLE) == "1":
        del environment["CUDA_VISIBLE_DEVICES"]
    os.environ.update(environment)
    os.environ.pop("MPLBACKEND", None)


def find_notebooks(names: list[str], notebooks_dir: Path) -> list[Path]:
    """Notebooks matching ``names`` (paths or name prefixes such as ``01``), all when empty."""
    available = sorted(notebooks_dir.glob("[0-9][0-9]_*.ipynb"))
    if not available:
        raise FileNotFoundError(f"no NN_name.ipynb notebooks in {notebooks_dir}")
    if not names:
        return available
    chosen = []
    for name in names:
        matches = [p for p in available if p.name == Path(name).name or p.name.startswith(name)]
        if not matches:
            valid = ", ".join(p.name for p in available)
            raise ValueError(f"no notebook matches {name!r}; available: {valid}")
        chosen.extend(m for m in matches if m not in chosen)
    return chosen


def execute_notebooks(names: list[str], notebooks_dir: Path, timeout: int = 600) -> int:
    """Execute the chosen notebooks in place; returns 0, or raises on the first failing cell."""
    try:
        import nbformat
        from nbclient import NotebookClient
    except ImportError as exc:
        raise SystemExit(f"regenerating notebooks needs the dev extra: pip install -e '.[dev]' ({exc})")
    apply_ci_environment()
    for path in find_notebooks(names, notebooks_dir):
        print(f"executing {path.name} ...", flush=True)
        nb = nbformat.read(path, as_version=4)
        client = NotebookClient(
            nb,
            timeout=timeout,
            kernel_name="python3",
            resources={"metadata": {"path": str(path.parent.resolve())}},
        )
        client.execute()
        nb.metadata.pop("widgets", None)  # widget state holds random model ids
        nbformat.write(nb, path)
    return 0
