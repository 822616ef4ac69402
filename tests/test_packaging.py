"""The install paths stay consistent: README commands, environment.yml, pyproject extras, CI script."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def readme_bash_blocks() -> list[str]:
    return re.findall(r"^```bash\n(.*?)\n```", (ROOT / "README.md").read_text(), flags=re.S | re.M)


def pip_requirements(command: str) -> list[str]:
    """The arguments after ``pip install`` in a shell command line."""
    match = re.search(r"pip install (.*?)(?:&&|$)", command)
    assert match, f"no pip install in {command!r}"
    return match.group(1).split()


def test_readme_opens_with_setup_and_test_commands() -> None:
    text = (ROOT / "README.md").read_text()
    blocks = readme_bash_blocks()
    first_two = text.split("```bash")[1:3]
    assert len(blocks) >= 2 and all(len(b.splitlines()) == 1 for b in blocks[:2])
    setup, tests = blocks[:2]
    assert setup.endswith("reidkit demo") and "pip install" in setup
    assert "pytest --nbval" in tests
    # Nothing but a title line and blank space before the two commands.
    preamble = text.split("```bash")[0]
    assert len(first_two) == 2 and preamble.count("```") == 0


def test_environment_yml_installs_what_the_readme_installs() -> None:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["channels"][0] == "conda-forge" and "defaults" not in env["channels"]
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    readme_reqs = join_editable(pip_requirements(readme_bash_blocks()[0]))
    unquote = lambda reqs: sorted(r.replace('"', "").replace("'", "") for r in reqs)  # noqa: E731
    assert unquote(pip_section) == unquote(readme_reqs)


def join_editable(args: list[str]) -> list[str]:
    """``["-e", ".[x]"]`` -> ``["-e .[x]"]``, as environment.yml writes an editable requirement."""
    out: list[str] = []
    for arg in args:
        if out and out[-1] == "-e":
            out[-1] = f"-e {arg}"
        else:
            out.append(arg)
    return out


def test_pyproject_extras_and_opencv_build() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert meta["scripts"]["reidkit"] == "reidkit.cli:main"
    extras = meta["optional-dependencies"]
    assert {"notebooks", "dev"} <= set(extras)
    every = meta["dependencies"] + [r for reqs in extras.values() for r in reqs]
    names = {re.split(r"[<>=!~\[ ]", r, maxsplit=1)[0].lower() for r in every}
    assert "opencv-python-headless" in names and "opencv-python" not in names
    assert {"torch", "torchvision", "numba"} <= names
    assert {"nbval", "pytest"} <= {re.split(r"[<>=]", r)[0] for r in extras["dev"]}


def test_ci_script_runs_the_readme_commands() -> None:
    script = ROOT / ".ci" / "run"
    out = subprocess.run(
        ["bash", "-c", f"source <(sed -n '/^readme_command()/,/^}}/p' {script}); "
         "readme_command 1; readme_command 2"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.splitlines()
    assert out == readme_bash_blocks()[:2]


def test_import_reidkit_reaches_the_subpackages_without_the_heavy_extras() -> None:
    """``import reidkit as rk`` alone gives ``rk.losses``, ``rk.engine``, ``rk.config``, ... (in a fresh interpreter,
    where nothing else imported them first) and pulls in none of the optional extras."""
    code = """
import json, sys
import reidkit as rk
reached = [rk.losses.build_loss, rk.engine.Trainer, rk.engine.evaluate_model, rk.config.load_config,
           rk.data.build_train_loader, rk.models.build_model, rk.evaluation.evaluate_rank, rk.viz]
heavy = ("wandb", "pytorch_grad_cam", "sklearn", "cv2", "ipywidgets", "jupyter_client")
print(json.dumps({"reached": len(reached), "heavy": [m for m in heavy if m in sys.modules]}))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert json.loads(out.splitlines()[-1]) == {"reached": 8, "heavy": []}
