"""The extensions table (verl_difficulty/verl_glue/patches.py) lists every place the plugin changes verl.

After the plugin loads and verl's extended modules are imported (in a fresh interpreter, with and without
VERL_PLATFORM=cpu), every function of ours found bound in a verl module, a verl class or a verl registry must be
a row of the table, and every row must be installed or say why it stepped aside.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

from verl_difficulty.verl_glue import patches

ROOT = Path(__file__).resolve().parents[1]

# Runs in a fresh interpreter: loads the plugin, imports every verl module we extend, then looks for our code in
# verl's namespaces and registries, whatever installed it.
SCAN = r"""
import importlib, inspect, json, os, sys, types

import verl  # loads the plugin (entry point)
import verl_difficulty
from verl_difficulty.verl_glue import patches

MODULES = ["verl.trainer.ppo.core_algos", "verl.trainer.ppo.ray_trainer", "verl.trainer.ppo.v1.utils",
           "verl.trainer.ppo.v1.trainer_base", "verl.trainer.ppo.v1.replay_buffer", "verl.workers.utils.losses",
           "verl.workers.engine_workers", "verl.experimental.reward_loop.reward_manager",
           "verl.plugin.platform.platform_manager", "verl.workers.rollout.base", "verl.workers.rollout.replica",
           "verl.utils.distributed", "verl.workers.engine.fsdp.transformer_impl"]
for name in MODULES:
    importlib.import_module(name)

OURS = os.path.dirname(verl_difficulty.__file__)


def ours(value):
    code = getattr(value, "__code__", None)
    if code is not None:
        return code.co_filename.startswith(OURS)
    if isinstance(value, type):
        return value.__module__.startswith("verl_difficulty")
    return isinstance(value, str) and value.startswith("verl_difficulty.")


found = []  # (where, marker)
for module_name, module in list(sys.modules.items()):
    if not module_name.startswith("verl.") or not isinstance(module, types.ModuleType):
        continue
    for attr, value in list(vars(module).items()):
        if callable(value) and not isinstance(value, type) and ours(value):
            found.append((f"{module_name}:{attr}", getattr(value, patches.EXTENSION_ATTR, None)))
        if isinstance(value, type) and value.__module__ == module_name:
            for name, member in vars(value).items():
                if callable(member) and ours(member):
                    found.append((f"{module_name}:{value.__qualname__}.{name}",
                                  getattr(member, patches.EXTENSION_ATTR, None)))

from verl.experimental.reward_loop.reward_manager import registry as reward_registry
from verl.plugin.platform.platform_manager import PlatformRegistry
from verl.trainer.ppo import core_algos
from verl.workers.engine.base import EngineRegistry
from verl.workers.rollout import base as rollout_base
from verl.workers.rollout.replica import RolloutReplicaRegistry

registries = {
    "verl.trainer.ppo.core_algos:ADV_ESTIMATOR_REGISTRY": dict(core_algos.ADV_ESTIMATOR_REGISTRY),
    "verl.experimental.reward_loop.reward_manager:REWARD_MANAGER": dict(reward_registry.REWARD_MANAGER),
    "verl.plugin.platform.platform_manager:PlatformRegistry": dict(PlatformRegistry._platforms),
    "verl.workers.rollout.base:_ROLLOUT_REGISTRY": {k[0]: v for k, v in rollout_base._ROLLOUT_REGISTRY.items()},
    "verl.workers.rollout.replica:RolloutReplicaRegistry": dict(RolloutReplicaRegistry._registry),
}
registered = [f"{where}[{name}]" for where, table in registries.items() for name, value in table.items()
              if ours(value)]
cpu_engines = {cls.__name__ for by_backend in EngineRegistry._engines.values() for by_device in by_backend.values()
               for device, cls in by_device.items() if device == "cpu"}
print("SCAN" + json.dumps({"found": found, "registered": registered, "installed": patches.installed(),
                           "cpu_engines": sorted(cpu_engines)}))
"""


def _scan(cpu: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "VERL_PLATFORM"}
    env["VERL_USE_EXTERNAL_PLUGINS"] = "verl_difficulty"
    if cpu:
        env["VERL_PLATFORM"] = "cpu"
    result = subprocess.run([sys.executable, "-c", SCAN], check=False, capture_output=True, text=True, env=env,
                            timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("SCAN"))
    return json.loads(line[len("SCAN"):])


@pytest.fixture(scope="module", params=[False, True], ids=["default", "VERL_PLATFORM=cpu"])
def scan(request):
    return request.param, _scan(request.param)


def test_everything_of_ours_in_verl_is_a_row_and_every_row_is_installed(scan):
    cpu, seen = scan
    rows = {row.target: row for row in patches.TABLE}
    for where, marker in seen["found"]:
        # a wrapper installed at its row's target, or verl's own later `from x import f` of a wrapped function
        assert marker in rows, f"{where} holds our code but is not a row of the extensions table (marker {marker})"
        assert where == marker or where not in rows or rows[where].ours == rows[marker].ours, (where, marker)
    for target in seen["registered"]:
        assert target in rows and rows[target].kind == "register", f"{target} is registered but not a row"
    installed = seen["installed"]
    for row in patches.TABLE:
        if row.kind == "subclass" or (row.cpu_only and not cpu):
            assert row.target not in installed, row.target
            continue
        state = installed.get(row.target, "")
        assert state == "installed" or state.startswith("stepped aside: "), f"{row.target}: {state!r}"
        if row.kind == "wrap" and state == "installed":
            assert row.target in {where for where, _ in seen["found"]}, f"{row.target} recorded but not found"
        if row.kind == "register" and state == "installed" and not row.target.endswith("EngineRegistry[cpu]"):
            assert row.target in seen["registered"], f"{row.target} recorded but not in verl's registry"
    assert set(installed) <= set(rows)
    if cpu:  # stock verl 0.9.1 lacks both CPU fixes: they are installed, not stepped aside
        assert installed["verl.utils.distributed:initialize_global_process_group_ray"] == "installed"
        assert seen["cpu_engines"] == ["FSDPEngineWithLMHead", "FSDPEngineWithValueHead"]
    else:
        assert seen["cpu_engines"] == []


def test_rows_are_well_formed_and_name_real_code():
    targets = [row.target for row in patches.TABLE]
    assert len(targets) == len(set(targets)), "one row per target"
    for row in patches.TABLE:
        assert row.kind in patches.KINDS and row.trainer in patches.TRAINERS, row
        assert row.steps_aside and row.upstream and row.feature, row
        patches.resolve(row.ours)  # our side exists
        if row.installer:
            assert callable(patches.resolve(row.installer)), row.installer
        if row.kind == "subclass":  # verl still has the private method we override, and we do override it
            module, _, qualname = row.target.partition(":")
            cls_name, attr = qualname.rsplit(".", 1)
            assert hasattr(patches.resolve(f"{module}:{cls_name}"), attr), row.target
            our_cls = patches.resolve(row.ours.rsplit(".", 1)[0])
            assert attr in vars(our_cls), row.ours
    for spec in patches.AFTER_ADVANTAGE + patches.LEGACY_START_CHECKS:
        assert callable(patches.resolve(spec)), spec


def test_wrap_refuses_a_target_not_in_the_table():
    module = types.ModuleType("verl.trainer.ppo.core_algos")

    def compute_policy_loss():
        return "verl"

    module.compute_policy_loss = compute_policy_loss
    with pytest.raises(patches.ExtensionError, match="verl.trainer.ppo.core_algos:compute_policy_loss is not in"):
        patches.wrap(module, "compute_policy_loss", lambda original: lambda: "ours")
    assert module.compute_policy_loss is compute_policy_loss
    with pytest.raises(patches.ExtensionError, match="not in the extensions table"):
        patches.register("verl.trainer.ppo.core_algos:ADV_ESTIMATOR_REGISTRY[mine]", None, object(), print)
    with pytest.raises(patches.ExtensionError, match="not a wrapper"):  # a registry row is not a wrapper
        patches.wrap(types.ModuleType("verl.trainer.ppo.core_algos"), "ADV_ESTIMATOR_REGISTRY[g2rpo]", print)


def test_wrap_marks_records_and_installs_once():
    module = types.ModuleType("verl.trainer.ppo.ray_trainer")
    calls = []

    def compute_data_metrics(batch):
        calls.append(batch)
        return {}

    module.compute_data_metrics = compute_data_metrics

    def make(original):
        return lambda batch: {**original(batch), "ours": 1.0}

    assert patches.wrap(module, "compute_data_metrics", make) is True
    wrapper = module.compute_data_metrics
    assert patches.wrap(module, "compute_data_metrics", make) is False and module.compute_data_metrics is wrapper
    assert wrapper("b") == {"ours": 1.0} and calls == ["b"]
    assert wrapper.__verl_difficulty_wrapped__ is compute_data_metrics
    assert wrapper.__verl_difficulty_extension__ == "verl.trainer.ppo.ray_trainer:compute_data_metrics"
    assert patches.installed()["verl.trainer.ppo.ray_trainer:compute_data_metrics"] == "installed"


def test_registration_collision_names_the_name_and_the_other_owner():
    from verl.trainer.ppo import core_algos

    from verl_difficulty.verl_glue import estimators

    registry = core_algos.ADV_ESTIMATOR_REGISTRY
    saved = dict(registry)
    try:
        estimators.register_estimators(core_algos)  # our own earlier registration: a no-op
        assert registry["g2rpo"] is estimators.compute_g2rpo_advantage

        def someone_elses_g2rpo(**kwargs):
            raise AssertionError("never called")

        registry["g2rpo"] = someone_elses_g2rpo
        with pytest.raises(patches.RegistrationError, match=r"'g2rpo'.*someone_elses_g2rpo"):
            estimators.register_estimators(core_algos)
        assert registry["g2rpo"] is someone_elses_g2rpo  # never replaced
    finally:
        registry.clear()
        registry.update(saved)


def test_reward_manager_collision_raises():
    from verl.experimental.reward_loop import reward_manager as module

    from verl_difficulty.verl_glue.reward_manager import MultiTaskRewardManager, register_reward_manager

    table = module.registry.REWARD_MANAGER
    saved = dict(table)
    try:
        register_reward_manager(module)  # idempotent
        assert table["multitask"] is MultiTaskRewardManager
        table["multitask"] = type("OtherManager", (), {})
        with pytest.raises(patches.RegistrationError, match="'multitask'.*OtherManager"):
            register_reward_manager(module)
    finally:
        table.clear()
        table.update(saved)


def test_a_collision_fails_the_import_instead_of_being_logged():
    from verl_difficulty.verl_glue.import_hooks import when_imported

    def colliding(module):
        raise patches.RegistrationError("taken")

    with pytest.raises(patches.RegistrationError, match="taken"):
        when_imported("json", colliding)  # already imported: runs now


def test_the_after_advantage_hooks_run_once_in_their_order():
    from verl_difficulty.verl_glue import metrics, seam

    metrics.drain()  # estimators called outside a trainer by earlier tests leave their metrics pending
    calls = []

    def verl_method(self, batch, step_metrics):
        calls.append("verl")
        metrics.post({"g2rpo/x": 1.0})
        return "meta"

    def first(trainer, batch, step_metrics, result):
        calls.append(("first", result, dict(step_metrics)))
        return result + "+tagged"

    def second(trainer, batch, step_metrics, result):
        calls.append(("second", result))
        step_metrics["length/x"] = 2.0
        return result

    wrapped = seam.wrap_v1_compute_advantage(verl_method, after=(first, second))
    batch = types.SimpleNamespace(keys=["k0", "k1"], partition_id="train")
    step_metrics: dict = {}
    assert wrapped(None, batch, step_metrics) == "meta+tagged"
    assert calls == ["verl", ("first", "meta", {"g2rpo/x": 1.0}), ("second", "meta+tagged")]
    assert step_metrics == {"g2rpo/x": 1.0, "length/x": 2.0}
    # the installed wrapper runs the table's hooks, in the documented order
    assert [f"{h.__module__}:{h.__name__}" for h in map(patches.resolve, patches.AFTER_ADVANTAGE)] == [
        "verl_difficulty.verl_glue.entropy_shaping:tag_batch_after_advantage",
        "verl_difficulty.verl_glue.length_metrics:add_length_metrics"]


def test_the_tracker_follows_what_the_estimator_declares_not_its_name():
    from omegaconf import OmegaConf
    from verl.trainer.ppo import core_algos

    from verl_difficulty.verl_glue import diva_tracker, estimators

    def trainer(name):
        return types.SimpleNamespace(config=OmegaConf.create({"algorithm": {"adv_estimator": name}}))

    assert diva_tracker._needs_tracker(trainer("diva_grpo"))
    assert not diva_tracker._needs_tracker(trainer("g2rpo")) and not diva_tracker._needs_tracker(trainer("grpo"))

    def renamed(**kwargs):
        return estimators.compute_diva_advantage(**kwargs)

    renamed.needs_difficulty_tracker = True
    core_algos.ADV_ESTIMATOR_REGISTRY["my_difficulty_estimator"] = renamed
    try:
        assert diva_tracker._needs_tracker(trainer("my_difficulty_estimator"))
    finally:
        core_algos.ADV_ESTIMATOR_REGISTRY.pop("my_difficulty_estimator")


def test_cli_lists_every_row():
    result = subprocess.run([sys.executable, "-m", "verl_difficulty.patches", "--list"], check=True,
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    lines = result.stdout.splitlines()
    assert len(lines) == len(patches.TABLE) + 2  # header, rule, one line per row
    for row, line in zip(patches.TABLE, lines[2:]):
        assert line.startswith(row.target + " "), line
        assert row.ours in line and row.upstream in line
    assert len({line.index(" " + row.kind + " ") for row, line in zip(patches.TABLE, lines[2:])}) == 1  # aligned


def test_patches_readme_holds_the_generated_table_and_named_patches_exist():
    readme = (ROOT / "patches" / "README.md").read_text()
    block = re.search(r"<!-- extensions table:[^\n]*-->\n(.*?)\n<!-- end of extensions table -->", readme, re.S)
    assert block, "patches/README.md lacks the generated extensions table"
    assert block.group(1) == patches.format_markdown(), (
        "patches/README.md is out of date: paste `python -m verl_difficulty.patches --markdown` into it")
    named = {name for row in patches.TABLE for name in re.findall(r"patches/(\d{4}-[\w.-]+\.diff)", row.upstream)}
    on_disk = {path.name for path in (ROOT / "patches").glob("*.diff")}
    assert named <= on_disk, f"the table names missing patch files: {sorted(named - on_disk)}"
    assert on_disk <= named, f"patch files no row names: {sorted(on_disk - named)}"
