"""Dataset parsers: folders on disk -> ``.train`` / ``.query`` / ``.gallery`` lists of :class:`ReIDItem`.

``build_dataset("market1501", "data/")`` looks a name up in :data:`DATASETS` and passes the options on;
``data/README.md`` describes each dataset's folder anatomy and where to put it.
"""
from __future__ import annotations

import inspect
import os
from typing import Any

from .base import (
    DatasetError,
    DatasetSizeWarning,
    NoCameraWarning,
    ReIDDataset,
    ReIDItem,
    SplitStats,
)
from .cuhk03 import CUHK03NP
from .dukemtmc import DukeMTMCreID
from .image_folder import ImageFolderReID
from .market1501 import Market1501
from .msmt17 import MSMT17
from .synthreid import SynthReID
from .validation import ValidationSplit, carve_validation

DATASETS: dict[str, type[ReIDDataset]] = {
    "market1501": Market1501,
    "dukemtmcreid": DukeMTMCreID,
    "msmt17": MSMT17,
    "cuhk03np": CUHK03NP,
    "imagefolder": ImageFolderReID,
    "synthreid": SynthReID,
}


def build_dataset(name: str, root: str | os.PathLike[str], **kwargs: Any) -> ReIDDataset:
    """Build the dataset registered as ``name`` from ``root`` with the dataset's options ``kwargs``.

    ``ValueError`` for an unknown name (listing the valid names), an unknown option or a missing
    required one (listing the dataset's valid options, e.g. ``variant`` of ``cuhk03np``).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(sorted(DATASETS))}")
    cls = DATASETS[name]
    params = {p: v for p, v in inspect.signature(cls).parameters.items() if p != "root"}
    options = ", ".join(params) or "none"
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)} for dataset {name!r}; valid options: {options}")
    missing = [p for p, v in params.items() if v.default is inspect.Parameter.empty and p not in kwargs]
    if missing:
        raise ValueError(f"dataset {name!r} requires option(s) {', '.join(missing)}; valid options: {options}")
    return cls(root, **kwargs)


__all__ = [
    "CUHK03NP",
    "DATASETS",
    "MSMT17",
    "DatasetError",
    "DatasetSizeWarning",
    "DukeMTMCreID",
    "ImageFolderReID",
    "Market1501",
    "NoCameraWarning",
    "ReIDDataset",
    "ReIDItem",
    "SplitStats",
    "SynthReID",
    "ValidationSplit",
    "build_dataset",
    "carve_validation",
]
