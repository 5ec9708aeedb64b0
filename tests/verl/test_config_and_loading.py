"""Hydra config (overrides without "+"), defaults by name alone, and loud plugin-load failures."""

import dataclasses
import os
import subprocess
import sys
import textwrap

import pytest
from hydra import compose, initialize_config_dir, initialize_config_module

from verl_difficulty.config import CONFIG_DIR, TRAINER_CONFIG_NAME
from verl_difficulty.settings import DivaConfig, DurianConfig, G2RPOConfig


def test_shipped_config_extends_ppo_trainer_and_takes_overrides_without_plus():
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        cfg = compose(config_name=TRAINER_CONFIG_NAME, overrides=[
            "algorithm.adv_estimator=g2rpo", "algorithm.g2rpo.mode=single_stage",
            "algorithm.g2rpo.task_key=extra_info.problem_type", "algorithm.g2rpo.tie_tolerance=0.01",
        ])
    assert cfg.actor_rollout_ref.rollout.n is not None  # verl's own tree is there
    assert cfg.trainer.use_v1 is True
    settings = G2RPOConfig.from_algorithm(cfg.algorithm)
    assert settings == G2RPOConfig(mode="single_stage", task_key="extra_info.problem_type", tie_tolerance=0.01)


def test_shipped_defaults_equal_the_dataclass_defaults():
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        cfg = compose(config_name=TRAINER_CONFIG_NAME)
    assert G2RPOConfig.from_algorithm(cfg.algorithm) == G2RPOConfig()
    assert DurianConfig.from_algorithm(cfg.algorithm) == DurianConfig()
    diva = DivaConfig.from_algorithm(cfg.algorithm)
    assert diva.tracker_path == f"{cfg.trainer.default_local_dir}/verl_difficulty/diva_tracker.json"
    assert dataclasses.replace(diva, tracker_path=None) == DivaConfig()


def test_diva_overrides_without_plus():
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        cfg = compose(config_name=TRAINER_CONFIG_NAME, overrides=[
            "algorithm.adv_estimator=diva_grpo", "algorithm.diva_grpo.rrb=code",
            "algorithm.diva_grpo.tracker_rule=step_table",
            "trainer.default_local_dir=/tmp/run1"])
    settings = DivaConfig.from_algorithm(cfg.algorithm)
    assert settings.rrb == "code" and settings.tracker_rule == "step_table"
    assert settings.tracker_path == "/tmp/run1/verl_difficulty/diva_tracker.json"


def test_diva_dataset_settings_share_the_trackers_file():
    from verl_difficulty.data.diva_dataset import DivaSettings

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        cfg = compose(config_name=TRAINER_CONFIG_NAME, overrides=[
            "data.diva.num_variants=3", "trainer.default_local_dir=/tmp/run2", "data.seed=7"])
    data = DivaSettings.from_data_config(cfg.data)
    assert data.num_variants == 3 and data.seed == 7
    assert data.tracker_path == DivaConfig.from_algorithm(cfg.algorithm).tracker_path \
        == "/tmp/run2/verl_difficulty/diva_tracker.json"


def test_durian_overrides_without_plus():
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        cfg = compose(config_name=TRAINER_CONFIG_NAME, overrides=[
            "algorithm.adv_estimator=durian", "algorithm.durian.alpha_ori=0.6", "algorithm.durian.alpha_reas=0.2",
            "algorithm.durian.perceptual_thresholds=[2.5,4.0]", "algorithm.durian.confidence=sum",
        ])
    settings = DurianConfig.from_algorithm(cfg.algorithm)
    assert settings.alphas == (0.6, 0.2, 0.2) and settings.perceptual_thresholds == (2.5, 4.0)
    assert settings.confidence == "sum"
    with initialize_config_module(config_module="verl.trainer.config", version_base=None):
        cfg = compose(config_name="ppo_trainer", overrides=["algorithm.adv_estimator=durian"])
    assert DurianConfig.from_algorithm(cfg.algorithm) == DurianConfig()


def test_stock_config_needs_plus_for_new_keys_and_works_by_name_alone():
    with initialize_config_module(config_module="verl.trainer.config", version_base=None):
        cfg = compose(config_name="ppo_trainer", overrides=["algorithm.adv_estimator=g2rpo"])
        assert G2RPOConfig.from_algorithm(cfg.algorithm) == G2RPOConfig()
        cfg = compose(config_name="ppo_trainer", overrides=["+algorithm.g2rpo.mode=single_stage"])
        assert G2RPOConfig.from_algorithm(cfg.algorithm).mode == "single_stage"


def test_config_dir_printed_by_module():
    out = subprocess.run([sys.executable, "-m", "verl_difficulty.config"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == CONFIG_DIR


def run_python(code, **env):
    full_env = {**os.environ, "VERL_USE_EXTERNAL_PLUGINS": "verl_difficulty", **env}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=full_env, timeout=300)


def test_entry_point_registers_in_a_fresh_process():
    out = run_python("""
        import verl
        from verl.trainer.ppo import core_algos
        print("registered", "g2rpo" in core_algos.ADV_ESTIMATOR_REGISTRY)
    """)
    assert out.returncode == 0, out.stderr
    assert "registered True" in out.stdout


def test_plugin_import_stays_light():
    """Loading the plugin inside `import verl` imports nothing but our own small modules."""
    code = """
        import sys, verl
        print("MODULES", sorted(sys.modules))
    """
    without = run_python(code, VERL_USE_EXTERNAL_PLUGINS="none")
    with_plugin = run_python(code)
    modules = lambda out: set(eval(out.stdout.split("MODULES", 1)[1]))  # noqa: E731
    added = modules(with_plugin) - modules(without)
    assert added and all(name.startswith("verl_difficulty") for name in added), sorted(added)
    assert "verl.trainer.ppo.core_algos" not in modules(with_plugin)


def test_load_failure_is_logged_at_warning_with_its_cause():
    # Make the plugin's import of its verl glue fail (None in sys.modules blocks an import), then import
    # verl as a user would: verl itself would only log this at DEBUG level.
    out = run_python("""
        import sys
        sys.modules["verl_difficulty.verl_glue"] = None
        import verl
        from verl.trainer.ppo import core_algos
        print("registered", "g2rpo" in core_algos.ADV_ESTIMATOR_REGISTRY)
    """)
    assert out.returncode == 0, out.stderr
    assert "registered False" in out.stdout
    assert "WARNING" in out.stderr and "verl-difficulty failed to load" in out.stderr
    assert "ModuleNotFoundError" in out.stderr and "verl_difficulty.verl_glue" in out.stderr


def test_failing_hook_is_logged_not_raised():
    out = run_python("""
        import logging
        from verl_difficulty.verl_glue.import_hooks import when_imported
        def bad(module):
            raise KeyError("boom")
        when_imported("json.tool", bad)
        import json.tool
        print("imported", json.tool.__name__)
    """)
    assert "imported json.tool" in out.stdout
    assert "hook" in out.stderr and "KeyError: 'boom'" in out.stderr


@pytest.mark.parametrize("already_imported", [False, True])
def test_hook_runs_once_whether_module_is_imported_before_or_after(already_imported):
    out = run_python(f"""
        from verl_difficulty.verl_glue.import_hooks import when_imported
        calls = []
        if {already_imported}:
            import csv
        when_imported("csv", lambda m: calls.append(m.__name__))
        import csv, importlib
        print("calls", calls)
    """)
    assert "calls ['csv']" in out.stdout, out.stdout + out.stderr
