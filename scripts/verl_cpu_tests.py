"""Run verl's own CPU tests (shipped in its wheel) in this process, with the plugin loaded.

Asserts first that verl loaded verl-difficulty through its entry point, so a pass means "verl's tests
pass with the plugin installed", not "with the plugin silently absent". Runs from a scratch directory so
our pytest configuration does not apply to verl's tests.
"""

import glob
import importlib.util
import os
import sys
import tempfile

import pytest


def select_test_files(site: str) -> list[str]:
    """verl's CPU tests this run uses, under ``site`` (the directory holding ``verl`` and verl's ``tests``)."""
    files = sorted(glob.glob(os.path.join(site, "tests", "trainer", "ppo", "*_on_cpu.py")))
    files.append(os.path.join(site, "tests", "trainer", "test_multi_trajectories_advantage_on_cpu.py"))
    return files


def main() -> int:
    import verl  # noqa: F401  (loads entry points)
    from verl.trainer.ppo import core_algos

    if "g2rpo" not in core_algos.ADV_ESTIMATOR_REGISTRY:
        print("verl-difficulty is not loaded in this process: refusing to call this a plugin-installed run")
        return 2
    spec = importlib.util.find_spec("verl")
    site = os.path.dirname(os.path.dirname(spec.origin))
    files = select_test_files(site)
    missing = [f for f in files if not os.path.exists(f)]
    if missing or len(files) < 2:
        print(f"verl's CPU tests not found in its wheel: {missing or files}")
        return 2
    print(f"verl-difficulty loaded; running {len(files)} verl test files from {site}/tests")
    os.chdir(tempfile.mkdtemp(prefix="verl-tests-"))
    return pytest.main(["-q", "-p", "no:cacheprovider", "--rootdir", os.getcwd(), *files])


if __name__ == "__main__":
    sys.exit(main())
