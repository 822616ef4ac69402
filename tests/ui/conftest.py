"""Browser tests (marker ``ui``): a real JupyterLab on loopback, Debian's headless Chromium, Playwright.

* Without a Chromium binary the tests skip with a message that says how to install one (never
  ``playwright install``: it downloads a browser); without the ``playwright`` or ``jupyterlab`` package they skip
  and name the extra to install.
* ``REIDKIT_UI_REQUIRED=1`` (set by ``.ci/run`` for its UI step) turns each of those skips into a failure with
  the same message, so a CI step whose browser or packages are missing cannot pass with every test skipped.
  Unset or ``0``: skip. This covers the ``chromium`` fixture and the module-level ``importorskip`` of the test
  files (a skipped collection under ``tests/ui`` is reported as a collection error).
* They run after every other test of the session (collection hook below), so a broken UI never hides a unit
  test failure and the slow part comes last.
* Screenshots land in ``$REIDKIT_UI_ARTIFACTS`` (default ``outputs/ui/`` in the checkout): ``<name>-before.png``,
  ``<name>-after.png``, and ``<test>-failure.png`` when a test fails. With ``REIDKIT_UI_DOCS=notebooks/screenshots``
  the tests also write the small copies that ``notebooks/README.md`` shows.
* Kernels are stopped after each test and the server at the end of the session, whatever happens.
"""
from __future__ import annotations

import importlib
import os
import re
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CHROMIUM_ENV = "REIDKIT_CHROMIUM"
UI_REQUIRED_ENV = "REIDKIT_UI_REQUIRED"
INSTALL_HINT = (
    "the UI tests need Debian's Chromium: install it with `sudo apt-get install chromium` "
    f"(or point {CHROMIUM_ENV} at a Chromium binary); do not run `playwright install`"
)
PLAYWRIGHT_HINT = "the UI tests need the dev extra: pip install -e '.[dev]'"
JUPYTERLAB_HINT = "the UI tests need the notebooks extra: pip install -e '.[notebooks]'"


def ui_required(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether ``$REIDKIT_UI_REQUIRED`` asks for failures instead of skips: ``1`` yes, unset/empty/``0`` no."""
    value = environ.get(UI_REQUIRED_ENV, "").strip()
    if value in ("", "0"):
        return False
    if value == "1":
        return True
    raise pytest.UsageError(
        f"{UI_REQUIRED_ENV}={value!r}; expected 1 (missing prerequisites fail) or 0 / unset (they skip)"
    )


def missing_prerequisite(chromium: str | None, has_playwright: bool, has_jupyterlab: bool) -> str | None:
    """The message for the first missing prerequisite of the UI tests (browser, then packages), or ``None``."""
    if chromium is None:
        return INSTALL_HINT
    if not has_playwright:
        return PLAYWRIGHT_HINT
    if not has_jupyterlab:
        return JUPYTERLAB_HINT
    return None


def skip_decision(reason: str | None, required: bool) -> Literal["run", "skip", "fail"]:
    """What to do about a missing prerequisite: run when there is none, else fail if required, else skip."""
    if reason is None:
        return "run"
    return "fail" if required else "skip"


def module_available(name: str) -> bool:
    """Whether ``import name`` succeeds (what ``pytest.importorskip`` checks)."""
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Move the ``ui`` tests after every other test (notebooks included), keeping each group's order."""
    ui = [item for item in items if item.get_closest_marker("ui") is not None]
    if ui:
        others = [item for item in items if item.get_closest_marker("ui") is None]
        items[:] = others + ui


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[pytest.CollectReport]:
    """Under ``REIDKIT_UI_REQUIRED=1`` a test file of ``tests/ui`` skipped at import (``importorskip``) fails."""
    report = yield
    if report.skipped and isinstance(collector, pytest.Module) and HERE in Path(collector.path).parents:
        if ui_required():
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            report.outcome = "failed"
            report.longrepr = f"{UI_REQUIRED_ENV}=1 and {reason.removeprefix('Skipped: ')}"
    return report


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    report = yield
    setattr(item, f"report_{report.when}", report)  # the page fixture takes a failure screenshot
    return report


def chromium_executable() -> str | None:
    """``$REIDKIT_CHROMIUM`` if set, else ``chromium`` on the ``PATH``; ``None`` when there is none."""
    configured = os.environ.get(CHROMIUM_ENV, "").strip()
    if configured:
        if not Path(configured).is_file():
            raise pytest.UsageError(f"{CHROMIUM_ENV}={configured!r} is not a file; expected a Chromium binary")
        return configured
    return shutil.which("chromium")


@pytest.fixture(scope="session")
def chromium() -> str:
    """The Chromium binary, or a skip that says what to install (a failure under ``REIDKIT_UI_REQUIRED=1``)."""
    executable = chromium_executable()
    reason = missing_prerequisite(
        executable, module_available("playwright.sync_api"), module_available("jupyterlab")
    )
    decision = skip_decision(reason, ui_required())
    if decision == "fail":
        pytest.fail(f"{UI_REQUIRED_ENV}=1 and {reason}", pytrace=False)
    if decision == "skip":
        pytest.skip(reason)
    assert executable is not None
    return executable


@pytest.fixture(scope="session")
def ui_artifacts() -> Path:
    """Where screenshots go (kept after the run, for CI to collect)."""
    folder = Path(os.environ.get("REIDKIT_UI_ARTIFACTS", "") or ROOT / "outputs" / "ui")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def docs_screenshots() -> Path | None:
    """``$REIDKIT_UI_DOCS`` (e.g. ``notebooks/screenshots``): also write the README's compact screenshots there."""
    folder = os.environ.get("REIDKIT_UI_DOCS", "").strip()
    return Path(folder) if folder else None


def start_lab(root: Path, home: Path, disabled_extensions: tuple[str, ...] = ()) -> Any:
    from lab_harness import LabServer

    root.mkdir(parents=True, exist_ok=True)
    return LabServer(root=root, home=home, disabled_extensions=disabled_extensions)


@pytest.fixture(scope="session")
def lab(chromium: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One JupyterLab for the session, serving a throw-away folder; stopped (kernels first) whatever happens."""
    base = tmp_path_factory.mktemp("lab")
    server = start_lab(base / "notebooks", base / "jupyter")
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def browser(chromium: str) -> Iterator[Any]:
    """Headless Chromium (Debian's binary, driven over CDP by Playwright), one per session."""
    from lab_harness import CHROMIUM_ARGS
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=chromium, headless=True, args=list(CHROMIUM_ARGS))
        try:
            yield instance
        finally:
            instance.close()


def _safe_name(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid.split("::")[-1])


@pytest.fixture
def page(browser: Any, lab: Any, request: pytest.FixtureRequest, ui_artifacts: Path) -> Iterator[Any]:
    """A fresh browser context at :data:`lab_harness.VIEWPORT`; on failure a whole-page screenshot is saved.

    Afterwards the page is closed and every kernel of the session's lab is shut down (they outlive the page).
    """
    from lab_harness import VIEWPORT

    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(60_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda err: errors.append(str(err)))
    tab.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    try:
        yield tab
    finally:
        try:
            report = getattr(request.node, "report_call", None)
            if report is not None and report.failed:
                tab.screenshot(path=str(ui_artifacts / f"{_safe_name(request.node.nodeid)}-failure.png"))
                if errors:
                    print("browser console errors:\n  " + "\n  ".join(errors[:20]))
        finally:
            try:
                context.close()
            finally:
                lab.shutdown_sessions()
