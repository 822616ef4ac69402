"""A real JupyterLab on loopback, driven by headless Chromium through Playwright: the UI tests' harness.

:class:`LabServer` starts ``jupyter lab`` from this interpreter on ``127.0.0.1`` and a free port with its own
config, data, runtime, settings and workspace folders (nothing from the user's Jupyter set-up leaks in, and
nothing is written back to it), and stops its kernels and itself in :meth:`LabServer.stop`. The page helpers
open a notebook, run all cells, wait for widgets, move a control and wait for the kernel's answer to show up.

Recipe and pitfalls: ``/work/shared/reference/browser-testing.md`` (news toast, windowing, idle flicker, ...).
"""
from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
from playwright.sync_api import Locator, Page
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

#: Chromium flags that work as root in a container without a GPU and keep the browser off the network.
CHROMIUM_ARGS: tuple[str, ...] = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
#: A laptop-sized window: every widget must be readable at this size.
VIEWPORT: dict[str, int] = {"width": 1280, "height": 900}
#: What an output area must never show once the notebook has run.
BAD_OUTPUT_TEXTS: tuple[str, ...] = ("Traceback", "Error displaying widget", "Loading widget")
WIDGET_MANAGER = "@jupyter-widgets/jupyterlab-manager"

# JupyterLab user settings: no news toast over the screenshots; every cell attached to the DOM (no windowing).
_LAB_SETTINGS: dict[str, dict[str, Any]] = {
    "apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
    "notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


class UICheckFailed(AssertionError):
    """The notebook in the browser is not what a reader should see (an error, a missing widget, a stale view)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LabServer:
    """``jupyter lab`` serving ``root`` with private state under ``home``; start with :meth:`start`.

    ``disabled_extensions`` are switched off through the isolated ``labconfig/page_config.json`` (the UI
    tests' negative control disables the widget manager this way).
    """

    root: Path
    home: Path
    disabled_extensions: tuple[str, ...] = ()
    startup_timeout_s: float = 90.0
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.home / "lab.log"

    def notebook_url(self, relative_path: str) -> str:
        """The page of a notebook under ``root``; ``reset`` ignores any saved workspace layout."""
        return f"{self.base_url}/lab/tree/{relative_path}?reset&token={self.token}"

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            JUPYTER_CONFIG_DIR=str(self.home / "config"),
            JUPYTER_DATA_DIR=str(self.home / "data"),
            JUPYTER_RUNTIME_DIR=str(self.home / "runtime"),
            JUPYTER_PLATFORM_DIRS="1",
            IPYTHONDIR=str(self.home / "ipython"),
            MPLCONFIGDIR=str(self.home / "matplotlib"),
            PATH=str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", ""),
        )
        env.pop("MPLBACKEND", None)
        env.pop("JUPYTER_PATH", None)
        return env

    def _write_private_state(self) -> None:
        settings = self.home / "settings" / "@jupyterlab"
        for relative, values in _LAB_SETTINGS.items():
            path = settings / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        labconfig = self.home / "config" / "labconfig"
        labconfig.mkdir(parents=True, exist_ok=True)
        disabled = {name: True for name in self.disabled_extensions}
        (labconfig / "page_config.json").write_text(json.dumps({"disabledExtensions": disabled}))
        for name in ("data", "runtime", "ipython", "matplotlib", "workspaces"):
            (self.home / name).mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root",
            f"--port={self.port}", "--ServerApp.ip=127.0.0.1", "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
            "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly",
            f"--LabApp.user_settings_dir={self.home / 'settings'}",
            f"--LabApp.workspaces_dir={self.home / 'workspaces'}",
        ]  # fmt: skip

    def start(self, attempts: int = 3) -> LabServer:
        """Start the server and wait until its REST API answers; retries on a port taken in between."""
        self._write_private_state()
        for attempt in range(1, attempts + 1):
            self.port = free_port()
            with self.log_path.open("ab") as log:
                self.process = subprocess.Popen(
                    self.command(), cwd=self.root, env=self.environment(), stdout=log, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, start_new_session=True,
                )  # fmt: skip
            if self._wait_until_up():
                return self
            port_taken = "is not available" in self.log_tail()
            self.stop()
            if not (port_taken and attempt < attempts):
                break
        raise RuntimeError(f"JupyterLab did not start on {self.base_url}; its log ends with:\n{self.log_tail()}")

    def _wait_until_up(self) -> bool:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False
            try:
                self.api("GET", "/api/status")
                return True
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.1)
        return False

    def api(self, method: str, path: str) -> Any:
        """One REST call with the token; returns the decoded JSON body (``None`` when empty)."""
        request = urllib.request.Request(
            self.base_url + path, method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def shutdown_sessions(self) -> None:
        """Stop every kernel through ``DELETE /api/sessions/<id>`` (kernels outlive the browser)."""
        for session in self.api("GET", "/api/sessions"):
            self.api("DELETE", f"/api/sessions/{session['id']}")

    def stop(self) -> None:
        """Stop the kernels, then the server (SIGTERM, then SIGKILL to its process group after 15 s)."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            try:
                self.shutdown_sessions()
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass  # the server is going down anyway; SIGTERM below stops its kernels too
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=15)
        # kernels are started in the server's session; kill any that survived a hard stop
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.is_file():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def copy_notebook(source: Path, root: Path, name: str | None = None) -> str:
    """Copy ``source`` into the server root without its stored outputs; returns its relative path.

    The browser works on this throw-away copy (JupyterLab autosaves), and with the outputs and execution
    counts cleared, whatever the page shows afterwards was computed in this run.
    """
    notebook = nbformat.read(source, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    notebook.metadata.pop("widgets", None)
    target = root / (name or source.name)
    nbformat.write(notebook, target)
    return target.name


def write_notebook(root: Path, name: str, cells: list[str]) -> str:
    """A code-only notebook for the ``python3`` kernel written into the server root; returns its relative path."""
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in cells])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nbformat.write(notebook, root / name)
    return name


# ---------------------------------------------------------------------------------------------------------
# Page helpers
# ---------------------------------------------------------------------------------------------------------
def wait_for_idle(page: Page, timeout_ms: float = 60_000) -> None:
    """Wait until the status bar says the kernel is idle (it flickers between messages: never sync on it alone)."""
    page.locator("#jp-main-statusbar").get_by_text("Idle").first.wait_for(timeout=timeout_ms)


def open_notebook(page: Page, lab: LabServer, relative_path: str, timeout_ms: float = 60_000) -> None:
    """Open the notebook, wait for its kernel to be idle and give the notebook the whole width."""
    page.goto(lab.notebook_url(relative_path))
    page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell").first.wait_for(timeout=timeout_ms)
    wait_for_idle(page, timeout_ms)
    if page.locator("#jp-left-stack").is_visible():
        page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current").click()


_RUN_STATE_JS = """
() => {
  const nb = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook');
  if (!nb) return null;
  if (nb.innerText.includes('Traceback')) return 'traceback';
  const cells = [...nb.querySelectorAll('.jp-CodeCell')].filter(
    c => (c.querySelector('.jp-InputArea-editor')?.innerText ?? '').trim() !== '');
  const prompts = cells.map(c => (c.querySelector('.jp-InputPrompt')?.textContent ?? '').trim());
  return cells.length && prompts.every(p => /^\\[\\d+\\]:$/.test(p)) ? prompts.join(' ') : null;
}
"""


def run_all_cells(page: Page, timeout_ms: float = 150_000) -> None:
    """Run > Run All Cells, and wait until every non-empty code cell has an execution count (1, 2, ... in order).

    Raises :class:`UICheckFailed` with the notebook's text when a cell raised (JupyterLab stops there).
    """
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel").get_by_text("Run All Cells", exact=True).click()
    try:
        state = page.wait_for_function(_RUN_STATE_JS, timeout=timeout_ms, polling=250).json_value()
    except PlaywrightTimeoutError as err:
        raise UICheckFailed(f"the notebook did not finish running in {timeout_ms / 1000:.0f} s") from err
    if state == "traceback":
        raise UICheckFailed("a cell raised; the notebook shows:\n" + notebook_text(page)[-3000:])
    prompts = state.split()
    expected = [f"[{n}]:" for n in range(1, len(prompts) + 1)]
    if prompts != expected:
        raise UICheckFailed(f"expected one top-to-bottom run in a fresh kernel, the prompts read {state}")
    wait_for_idle(page, timeout_ms)


def notebook_text(page: Page) -> str:
    return page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook").inner_text()


def wait_for_widgets(page: Page, selectors: Iterable[str], timeout_ms: float = 10_000) -> None:
    """Wait until each selector is visible; fail naming the missing ones and what the outputs show instead."""
    missing = []
    for selector in selectors:
        try:
            page.locator(selector).first.wait_for(state="visible", timeout=timeout_ms)
        except PlaywrightTimeoutError:
            missing.append(selector)
            timeout_ms = 1_000  # the first miss already waited; check the others quickly
    if missing:
        outputs = page.locator(".jp-Cell-outputArea").all_inner_texts()
        shown = "\n".join(text.strip()[:300] for text in outputs if text.strip())
        raise UICheckFailed(f"widget(s) {', '.join(missing)} not rendered; the outputs show:\n{shown}")


def assert_outputs_clean(page: Page) -> None:
    """Fail when an output area shows a traceback, "Error displaying widget" or a widget still loading."""
    for text in page.locator(".jp-Cell-outputArea").all_inner_texts():
        for bad in BAD_OUTPUT_TEXTS:
            if bad in text:
                raise UICheckFailed(f'an output shows "{bad}":\n{text.strip()[:2000]}')


def run_notebook_with_widgets(page: Page, lab: LabServer, relative_path: str, widget_selectors: Iterable[str]) -> None:
    """The harness in one call: open, run all cells, wait for the widgets, fail on any error text shown."""
    open_notebook(page, lab, relative_path)
    run_all_cells(page)
    wait_for_widgets(page, widget_selectors)
    wait_for_idle(page)
    assert_outputs_clean(page)


def image_src(page: Page, selector: str) -> str:
    """The ``src`` of the first image matching ``selector`` (a ``data:``/``blob:`` URL for a widget image)."""
    src = page.locator(selector).first.get_attribute("src")
    if not src:
        raise UICheckFailed(f"{selector} has no src")
    return src


def wait_for_change(
    page: Page, selector: str, before: str, attribute: str = "src", timeout_ms: float = 60_000
) -> str:
    """Wait until the element's ``attribute`` (or its text, for ``attribute="text"``) differs from ``before``.

    For images also wait until the new picture has loaded. Returns the new value.
    """
    script = """([sel, attr, before]) => {
      const el = document.querySelector(sel);
      if (!el) return false;
      const now = attr === 'text' ? el.textContent.trim() : el.getAttribute(attr);
      if (now === null || now === before) return false;
      return el.tagName !== 'IMG' || el.complete;
    }"""
    try:
        page.wait_for_function(script, arg=[selector, attribute, before], timeout=timeout_ms, polling=100)
    except PlaywrightTimeoutError as err:
        raise UICheckFailed(f"{selector} kept its {attribute} for {timeout_ms / 1000:.0f} s after the change") from err
    if attribute == "text":
        return page.locator(selector).first.inner_text().strip()
    return page.locator(selector).first.get_attribute(attribute) or ""


# ---------------------------------------------------------------------------------------------------------
# Moving controls the way a person does
# ---------------------------------------------------------------------------------------------------------
def slider_readout(control: Locator) -> str:
    return control.locator(".widget-readout").first.inner_text().strip()


def drag_slider(page: Page, control: Locator, fraction: float) -> str:
    """Drag a slider's handle with the mouse to ``fraction`` of its track; returns the front-end readout.

    One drag is one ``change`` event, so a ``continuous_update=False`` slider asks the kernel exactly once.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction!r}")
    handle = control.locator(".noUi-handle").first
    handle.scroll_into_view_if_needed()
    track = control.locator(".noUi-target").first.bounding_box()
    grip = handle.bounding_box()
    if track is None or grip is None:
        raise UICheckFailed("the slider is not laid out (no bounding box)")
    y = grip["y"] + grip["height"] / 2
    page.mouse.move(grip["x"] + grip["width"] / 2, y)
    page.mouse.down()
    page.mouse.move(track["x"] + track["width"] * fraction, y, steps=10)
    page.mouse.up()
    return slider_readout(control)


def pick_other_option(control: Locator) -> str:
    """Choose a different entry of a dropdown (``<select>``) or toggle-button group; returns its label."""
    select = control.locator("select")
    if select.count():
        options = select.first.locator("option").all_inner_texts()
        current = select.first.evaluate("s => s.options[s.selectedIndex]?.text ?? ''")
        choices = [o for o in options if o != current]
        if not choices:
            raise UICheckFailed(f"the dropdown offers nothing but {current!r}")
        select.first.select_option(label=choices[0])
        return choices[0]
    buttons = control.locator("button:not(.mod-active)")
    if buttons.count():
        label = buttons.first.inner_text().strip()
        buttons.first.click()
        return label
    raise UICheckFailed("the control is neither a dropdown nor a group of toggle buttons")


def move_control(page: Page, control: Locator, slider_fraction: float = 0.8) -> str:
    """Change a control as a person would: drag a slider, pick another dropdown entry or toggle button."""
    control.first.wait_for(state="visible")
    if control.locator(".noUi-handle").count():
        return drag_slider(page, control, slider_fraction)
    return pick_other_option(control)


# ---------------------------------------------------------------------------------------------------------
# Screenshots
# ---------------------------------------------------------------------------------------------------------
def widget_output(page: Page, widget_selector: str) -> Locator:
    """The cell output area that holds ``widget_selector`` (the picture a reader sees of that widget)."""
    return page.locator(".jp-Cell-outputArea", has=page.locator(widget_selector)).first


def screenshot(
    page: Page,
    target: Locator,
    name: str,
    artifacts: Path,
    docs: Path | None = None,
    max_width: int = 600,
    colors: int = 80,
) -> Path:
    """Save ``artifacts/<name>.png`` of ``target`` whole; with ``docs``, also a small ``docs/<name>.png``.

    The notebook scrolls inside its own panel, so an output taller than the window cannot be captured in one
    piece: the window grows just for the shot and gets its size back afterwards. The documentation copy is
    trimmed of empty margins, at most ``max_width`` pixels wide and reduced to ``colors`` colours (a few dozen KB).
    """
    path = artifacts / f"{name}.png"
    compact_copy = docs / f"{name}.png" if docs is not None else None
    path.parent.mkdir(parents=True, exist_ok=True)
    box = target.bounding_box()
    if box is None:
        raise UICheckFailed(f"cannot screenshot {path.name}: the element is not laid out")
    size = page.viewport_size or VIEWPORT
    needed = int(box["height"]) + 200
    try:
        if needed > size["height"]:
            page.set_viewport_size({"width": size["width"], "height": needed})
        target.scroll_into_view_if_needed()
        target.screenshot(path=str(path), animations="disabled")
    finally:
        page.set_viewport_size(size)
    if compact_copy is not None:
        from PIL import Image, ImageChops

        compact_copy.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(path) as image:
            rgb = image.convert("RGB")
        background = Image.new("RGB", rgb.size, rgb.getpixel((rgb.width - 1, rgb.height - 1)))
        # trim the empty margin right and below (ignoring the cell's top border line)
        content = ImageChops.difference(rgb, background).crop((0, 4, rgb.width, rgb.height)).getbbox()
        if content is not None:
            rgb = rgb.crop((0, 0, min(rgb.width, content[2] + 8), min(rgb.height, content[3] + 12)))
        if rgb.width > max_width:
            rgb = rgb.resize((max_width, round(rgb.height * max_width / rgb.width)), Image.Resampling.LANCZOS)
        palette = rgb.quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        palette.save(compact_copy, optimize=True)
    return path


