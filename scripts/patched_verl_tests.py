"""Run the tests against verl as the patches would leave it: patches/*.diff applied, the plugin's wrappers off.

Copies the installed ``verl`` package (and verl's own ``tests``) to a scratch directory, applies every
patch with ``patch -p1`` (any reject, offset or fuzz is an error), and then, with the copy first on
``PYTHONPATH`` and ``VERL_DIFFICULTY_RUNTIME_PATCHES=0`` (the plugin registers its names, wraps nothing):

1. checks in a subprocess that ``verl`` is the patched copy and that no wrapper was installed;
2. runs verl's own CPU tests, selected by ``scripts/verl_cpu_tests.py``;
3. runs our tests that do not need the plugin's wrappers (``OUR_TESTS``; ``EXCLUDED`` says what is left out
   and why).

The installed verl is never touched. Exit status 0 only when every step passes.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PATCHES = sorted((ROOT / "patches").glob("*.diff"))
SWITCH = "VERL_DIFFICULTY_RUNTIME_PATCHES"

# Ours that hold on patched verl without the wrappers: the estimator math and the entropy-band term, the
# estimators through verl's compute_advantage (0001 forwards the per-sample fields), labels, the fuzz run,
# settings and loading.
OUR_TESTS = (
    "tests/core",
    "tests/verl/test_g2rpo_in_verl.py",
    "tests/verl/test_durian_in_verl.py",
    "tests/verl/test_diva_in_verl.py",
    "tests/verl/test_labels.py",
    "tests/verl/test_fuzz_estimators.py",
    "tests/verl/test_config_and_loading.py",
)

# Left out by design: they test the wrappers this run switches off (passed to pytest as --deselect, a
# prefix of the test id), or, for tests/test_patches.py, apply the patches to verl themselves.
_LOSS_WRAPPER = "tests the plugin's ppo_loss wrapper (its own batch keys); patch 0004 reads other keys"
EXCLUDED: dict[str, str] = {
    "tests/test_patches.py": "applies the patches to a copy of the verl it imports, here already patched; "
                             "it runs against the installed verl in the main test run",
    "tests/core/test_entropy_shaping_verl.py::test_plugin_wraps_both_bindings": _LOSS_WRAPPER,
    "tests/core/test_entropy_shaping_verl.py::test_wrapped_ppo_loss_adds_the_term_and_backprops": _LOSS_WRAPPER,
    "tests/core/test_entropy_shaping_verl.py::test_disabled_is_verl_untouched": _LOSS_WRAPPER,
    "tests/core/test_entropy_shaping_verl.py::test_entropy_estimator_without_entropy_names_the_fix": _LOSS_WRAPPER,
    "tests/core/test_entropy_shaping_verl.py::test_microbatches_through_verl_loss_match_one_batch": _LOSS_WRAPPER,
    "tests/verl/test_g2rpo_in_verl.py::test_verl_native_forwarding_is_detected":
        "tests the compute_advantage wrapper's probe on stock verl",
    "tests/verl/test_diva_in_verl.py::test_checkpoint_hooks_are_installed_on_both_trainers":
        "tests the checkpoint wrappers (the tracker's checkpoint hook has no patch: not upstreamable)",
}

# Runs in a subprocess with the run's environment: verl must be the patched copy, and no row that changes
# verl's code may be installed, only the plugin's names.
PROBE = r"""
import sys

import verl
from verl.trainer.ppo import core_algos, ray_trainer  # noqa: F401
from verl.trainer.ppo.v1 import trainer_base, utils  # noqa: F401
from verl.workers import engine_workers  # noqa: F401

from verl_difficulty.verl_glue.patches import by_target, installed

assert verl.__file__.startswith(sys.argv[1]), f"verl is {verl.__file__}, not the patched copy in {sys.argv[1]}"
done = installed()
wrapped = sorted(t for t in done if by_target(t).changes_verl_code)
assert not wrapped, f"the switch is off but these rows were installed: {wrapped}"
assert {"g2rpo", "durian", "diva_grpo"} <= set(core_algos.ADV_ESTIMATOR_REGISTRY), "our estimators are missing"
print(f"verl from {verl.__file__}; installed: {len(done)} registrations, no wrapper")
"""


def installed_site() -> Path:
    """The directory holding the installed ``verl`` package (and verl's ``tests``)."""
    spec = importlib.util.find_spec("verl")
    if spec is None or spec.origin is None:
        raise SystemExit("verl is not installed in this environment")
    return Path(spec.origin).parents[1]


def patched_copy(site: Path, dest: Path) -> None:
    """Copy verl and its tests to ``dest`` and apply every patch; exit on any reject, offset or fuzz."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(site / "verl", dest / "verl", ignore=ignore)
    # verl's tests go next to the copy: run from site-packages, pytest would put site-packages (and the
    # unpatched verl) first on sys.path, since verl's tests directory is a package.
    shutil.copytree(site / "tests", dest / "tests", ignore=ignore)
    if not PATCHES:
        raise SystemExit(f"no patches found in {ROOT / 'patches'}")
    for diff in PATCHES:
        run = subprocess.run(["patch", "-p1", "--forward", "--batch", "--no-backup-if-mismatch", "-d", str(dest),
                              "-i", str(diff)], capture_output=True, text=True)
        out = run.stdout + run.stderr
        if run.returncode != 0 or any(word in out.lower() for word in ("offset", "fuzz", "reject", "failed")):
            raise SystemExit(f"{diff.name} does not apply cleanly to verl in {site}:\n{out}")
        print(f"applied {diff.name}")


def step(name: str, cmd: list[str], env: dict[str, str]) -> tuple[str, int, float, str]:
    """Run ``cmd``, echoing its output; (name, exit status, seconds, its last line: pytest's counts)."""
    print(f"\n== {name}: {' '.join(cmd)}", flush=True)
    start = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    last = ""
    for line in proc.stdout:
        print(line, end="", flush=True)
        last = line.strip() or last
    return name, proc.wait(), time.monotonic() - start, last


def main() -> int:
    site = installed_site()
    with tempfile.TemporaryDirectory(prefix="patched-verl-") as tmp:
        dest = Path(tmp)
        patched_copy(site, dest)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(dest), env.get("PYTHONPATH", "")) if p)
        env[SWITCH] = "0"
        env.setdefault("VERL_USE_EXTERNAL_PLUGINS", "verl_difficulty")
        py = sys.executable
        deselect = [arg for test in EXCLUDED for arg in ("--deselect", test)]
        results = [
            step("patched verl, no wrappers", [py, "-c", PROBE, str(dest / "verl")], env),
            step("verl's CPU tests", [py, str(ROOT / "scripts" / "verl_cpu_tests.py")], env),
            step("our tests", [py, "-m", "pytest", "-q", *OUR_TESTS, *deselect], env),
        ]
    print(f"\npatched verl ({len(PATCHES)} patches applied to verl from {site}), {SWITCH}=0:")
    for name, rc, seconds, last in results:
        print(f"  {'PASS' if rc == 0 else f'FAIL (exit {rc})':<14} {name} ({seconds:.0f} s): {last}")
    for test, why in EXCLUDED.items():
        print(f"  excluded: {test}: {why}")
    return 0 if all(rc == 0 for _, rc, _, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
