"""``REIDKIT_UI_REQUIRED=1`` turns the browser tests' skips into failures (no browser needed, not marked ``ui``).

The decision is checked as pure functions of ``tests/ui/conftest.py``, then end to end: pytest in a subprocess
on one UI test file, with a ``PATH`` that has no Chromium, or with ``playwright`` shadowed by a package that
cannot be imported.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
UI_TEST_FILE = "tests/ui/test_ui_augmentation.py"


def _load_ui_conftest() -> ModuleType:
    spec = importlib.util.spec_from_file_location("reidkit_tests_ui_conftest", ROOT / "tests" / "ui" / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ui = _load_ui_conftest()


@pytest.mark.parametrize(("environ", "expected"), [({}, False), ({"REIDKIT_UI_REQUIRED": ""}, False),
                                                   ({"REIDKIT_UI_REQUIRED": "0"}, False),
                                                   ({"REIDKIT_UI_REQUIRED": "1"}, True),
                                                   ({"REIDKIT_UI_REQUIRED": " 1 "}, True)])  # fmt: skip
def test_ui_required_reads_the_variable(environ: dict[str, str], expected: bool) -> None:
    assert ui.ui_required(environ) is expected


def test_ui_required_rejects_other_values() -> None:
    with pytest.raises(pytest.UsageError, match=r"REIDKIT_UI_REQUIRED='yes'; expected 1"):
        ui.ui_required({"REIDKIT_UI_REQUIRED": "yes"})


def test_missing_prerequisite_names_the_first_missing_one() -> None:
    assert ui.missing_prerequisite("/usr/bin/chromium", True, True) is None
    assert ui.missing_prerequisite(None, True, True) == ui.INSTALL_HINT
    assert ui.missing_prerequisite(None, False, False) == ui.INSTALL_HINT  # the browser comes first
    assert ui.missing_prerequisite("/usr/bin/chromium", False, True) == ui.PLAYWRIGHT_HINT
    assert ui.missing_prerequisite("/usr/bin/chromium", False, False) == ui.PLAYWRIGHT_HINT
    assert ui.missing_prerequisite("/usr/bin/chromium", True, False) == ui.JUPYTERLAB_HINT
    assert "apt-get install chromium" in ui.INSTALL_HINT


def test_skip_decision_fails_only_when_required_and_something_is_missing() -> None:
    assert ui.skip_decision(None, required=False) == "run"
    assert ui.skip_decision(None, required=True) == "run"
    assert ui.skip_decision(ui.INSTALL_HINT, required=False) == "skip"
    assert ui.skip_decision(ui.INSTALL_HINT, required=True) == "fail"


def test_module_available() -> None:
    assert ui.module_available("json")
    assert not ui.module_available("reidkit_no_such_module_for_this_test")


def _run_ui_file(tmp_path: Path, *, required: bool, hide_playwright: bool) -> subprocess.CompletedProcess[str]:
    """pytest on one UI test file with no Chromium on ``PATH`` (and, if asked, ``playwright`` not importable)."""
    env = {key: value for key, value in os.environ.items() if key not in ("REIDKIT_CHROMIUM", "REIDKIT_UI_REQUIRED")}
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir(parents=True)
    env["PATH"] = str(empty_bin)
    if required:
        env["REIDKIT_UI_REQUIRED"] = "1"
    if hide_playwright:
        fake = tmp_path / "site" / "playwright"
        fake.mkdir(parents=True)
        (fake / "__init__.py").write_text(
            'raise ModuleNotFoundError("playwright is hidden by this test", name="playwright")\n'
        )
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(fake.parent), env.get("PYTHONPATH", "")]))
    command = [sys.executable, "-m", "pytest", UI_TEST_FILE, "-m", "ui", "-p", "no:cacheprovider", "-q", "-rs"]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.slow
def test_without_chromium_the_ui_tests_skip_unless_required(tmp_path: Path) -> None:
    skipped = _run_ui_file(tmp_path / "optional", required=False, hide_playwright=False)
    assert skipped.returncode == 0, skipped.stdout + skipped.stderr
    assert "apt-get install chromium" in skipped.stdout
    assert " skipped" in skipped.stdout and "passed" not in skipped.stdout

    failed = _run_ui_file(tmp_path / "required", required=True, hide_playwright=False)
    assert failed.returncode != 0, failed.stdout + failed.stderr
    assert "REIDKIT_UI_REQUIRED=1 and " + ui.INSTALL_HINT in failed.stdout
    assert "skipped" not in failed.stdout


@pytest.mark.slow
def test_without_playwright_a_required_ui_file_fails_to_collect(tmp_path: Path) -> None:
    failed = _run_ui_file(tmp_path, required=True, hide_playwright=True)
    assert failed.returncode != 0, failed.stdout + failed.stderr
    assert "ERROR collecting " + UI_TEST_FILE in failed.stdout
    assert "REIDKIT_UI_REQUIRED=1 and " + ui.PLAYWRIGHT_HINT in failed.stdout
    assert "skipped" not in failed.stdout
