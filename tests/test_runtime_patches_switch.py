"""VERL_DIFFICULTY_RUNTIME_PATCHES=0: the plugin registers its names and changes none of verl's code."""

import os
import subprocess
import sys
from collections import defaultdict

from verl_difficulty.verl_glue import runtime_patches_enabled
from verl_difficulty.verl_glue.patches import TABLE, hook_plan, switched_off

# Imports every verl module the table extends, then prints what the plugin installed and its INFO log.
PROBE = r"""
import logging
import sys

logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="LOG %(message)s")
import verl  # noqa: F401
from verl.experimental.reward_loop import reward_manager  # noqa: F401
from verl.trainer.ppo import core_algos, ray_trainer  # noqa: F401
from verl.trainer.ppo.v1 import replay_buffer, trainer_base, utils  # noqa: F401
from verl.workers import engine_workers  # noqa: F401
from verl.workers.utils import losses  # noqa: F401

from verl_difficulty.verl_glue.patches import EXTENSION_ATTR, installed

for target, state in sorted(installed().items()):
    print("ROW", target, state)
for fn in (ray_trainer.compute_advantage, utils.compute_advantage, trainer_base.PPOTrainer._compute_advantage,
           losses.ppo_loss, engine_workers.ppo_loss):
    print("MARK", getattr(fn, EXTENSION_ATTR, None))
"""


def _probe(switch: str | None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VERL_DIFFICULTY_RUNTIME_PATCHES", "VERL_PLATFORM")}
    env["VERL_USE_EXTERNAL_PLUGINS"] = "verl_difficulty"
    if switch is not None:
        env["VERL_DIFFICULTY_RUNTIME_PATCHES"] = switch
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.splitlines()


def test_switch_off_keeps_the_names_and_wraps_nothing():
    lines = _probe("0")
    rows = {line.split()[1] for line in lines if line.startswith("ROW ")}
    names = {row.target for row in TABLE if row.kind == "register" and not row.changes_verl_code}
    assert rows == names
    assert [line for line in lines if line.startswith("MARK ")] == ["MARK None"] * 5
    logged = [line for line in lines if line.startswith("LOG ") and "VERL_DIFFICULTY_RUNTIME_PATCHES=0" in line]
    assert len(logged) == 1 and "verl.trainer.ppo.ray_trainer:compute_advantage" in logged[0], lines


def test_switch_on_by_default_wraps():
    lines = _probe(None)
    assert "MARK verl.trainer.ppo.ray_trainer:compute_advantage" in lines
    assert "MARK verl.workers.utils.losses:ppo_loss" in lines


def test_switch_values(monkeypatch):
    for value, on in (("0", False), ("off", False), ("False", False), ("1", True), ("", True), ("yes", True)):
        monkeypatch.setenv("VERL_DIFFICULTY_RUNTIME_PATCHES", value)
        assert runtime_patches_enabled() is on, value
    monkeypatch.delenv("VERL_DIFFICULTY_RUNTIME_PATCHES")
    assert runtime_patches_enabled()


def test_no_installer_serves_both_a_name_and_a_code_change():
    """The switch drops whole installers, so none may install a kept name and a dropped change together."""
    kinds = defaultdict(set)
    for row in TABLE:
        if row.installer:
            kinds[(row.module, row.installer)].add(row.changes_verl_code)
    assert all(len(flags) == 1 for flags in kinds.values()), dict(kinds)
    for cpu in (False, True):
        kept = set(hook_plan(cpu=cpu, runtime_patches=False))
        assert kept and not kept & {(row.module, row.installer) for row in TABLE if row.target in switched_off(cpu)}
        assert not any("verl_fixes" in installer for _, installer in kept)  # the CPU fixes are patch 0005
