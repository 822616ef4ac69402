"""Environment check used by ``00_setup_check.ipynb`` and ``reidkit info``."""
from __future__ import annotations

import importlib
import importlib.metadata
import platform
from dataclasses import dataclass

# (distribution name, import name, which install extra provides it)
PACKAGES: tuple[tuple[str, str, str], ...] = (
    ("torch", "torch", "core"),
    ("torchvision", "torchvision", "core"),
    ("timm", "timm", "core"),
    ("numpy", "numpy", "core"),
    ("numba", "numba", "core"),
    ("pillow", "PIL", "core"),
    ("pyyaml", "yaml", "core"),
    ("matplotlib", "matplotlib", "core"),
    ("jupyterlab", "jupyterlab", "notebooks"),
    ("ipywidgets", "ipywidgets", "notebooks"),
    ("grad-cam", "pytorch_grad_cam", "notebooks"),
    ("opencv-python-headless", "cv2", "notebooks"),
    ("wandb", "wandb", "notebooks"),
    ("pytest", "pytest", "dev"),
    ("nbval", "nbval", "dev"),
)


@dataclass(frozen=True)
class PackageStatus:
    name: str
    extra: str
    version: str | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None


def check_packages() -> list[PackageStatus]:
    """Import every dependency and report its installed version or the import error."""
    report = []
    for dist, module, extra in PACKAGES:
        try:
            version = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            report.append(PackageStatus(dist, extra, None, f"not installed (pip install 'reidkit[{extra}]')"))
            continue
        try:
            importlib.import_module(module)
        except ImportError as exc:  # installed but broken, e.g. two OpenCV builds fighting over cv2
            report.append(PackageStatus(dist, extra, version, f"import {module} failed: {exc}"))
            continue
        report.append(PackageStatus(dist, extra, version, None))
    return report


def conflicting_opencv() -> list[str]:
    """OpenCV distributions besides the headless build; grad-cam needs exactly one ``cv2``."""
    others = ("opencv-python", "opencv-contrib-python")
    found = []
    for dist in others:
        try:
            importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
        found.append(dist)
    return found


def environment_report() -> str:
    """A plain-text table: Python, each package with its version and status, and the device."""
    import torch

    lines = [f"{'python':<24} v{platform.python_version()}"]
    for status in check_packages():
        state = "ok" if status.ok else status.error
        version = f"v{status.version}" if status.version else "-"
        lines.append(f"{status.name:<24} {version:<14} {status.extra:<10} {state}")
    clash = conflicting_opencv()
    if clash:
        lines.append(f"WARNING: {', '.join(clash)} installed next to opencv-python-headless: uninstall it")
    lines.append(f"{'device':<24} {'cuda' if torch.cuda.is_available() else 'cpu'}")
    return "\n".join(lines)
