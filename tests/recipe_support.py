"""Running a recipe script in one of its modes from a test (recipes/README.md, "The recipe contract")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "# ---- resolved config (verl_difficulty dry run) ----", "# ---- end of resolved config ----"


def recipe_script(recipe: str) -> Path:
    return ROOT / "recipes" / recipe / "run.sh"


def run_recipe(recipe: str, *overrides: str, cwd: Path, timeout: float = 300,
               **env: str) -> subprocess.CompletedProcess:
    """``bash recipes/<recipe>/run.sh OVERRIDES`` with this interpreter as PYTHON and ``env`` added."""
    full_env = {**os.environ, "PYTHON": sys.executable,
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}", **env}
    return subprocess.run(["bash", str(recipe_script(recipe)), *overrides], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def resolved_config(stdout: str) -> dict:
    """The YAML a dry run prints between its markers."""
    if BEGIN not in stdout or END not in stdout:
        raise AssertionError(f"no resolved config in the output:\n{stdout[-3000:]}")
    return yaml.safe_load(stdout.split(BEGIN, 1)[1].split(END, 1)[0])


def dry_run(recipe: str, *overrides: str, cwd: Path, **env: str) -> dict:
    """The resolved config of ``DRY_RUN=1 bash recipes/<recipe>/run.sh``; fails the test on a non-zero exit."""
    done = run_recipe(recipe, *overrides, cwd=cwd, DRY_RUN="1", **env)
    assert done.returncode == 0, f"dry run failed ({done.returncode}):\n{done.stderr[-4000:]}"
    return resolved_config(done.stdout)


def get(config: dict, dotted: str):
    node = config
    for part in dotted.split("."):
        node = node[part]
    return node
