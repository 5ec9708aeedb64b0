"""Entropy shaping is checked when the trainer starts (driver), not at the first loss inside a Ray worker."""

import pytest
from omegaconf import OmegaConf

from verl_difficulty.settings import ConfigError
from verl_difficulty.verl_glue.entropy_shaping import check_run_config


def _config(shaping: dict, **actor) -> OmegaConf:
    return OmegaConf.create({"algorithm": {"entropy_shaping": shaping},
                             "actor_rollout_ref": {"actor": {"calculate_entropy": False, "entropy_coeff": 0,
                                                             **actor}}})


def test_legacy_trainer_refuses_enabled_shaping():
    with pytest.raises(ConfigError, match="trainer.use_v1=true"):
        check_run_config(_config({"enable": True}), "legacy")
    assert not check_run_config(_config({"enable": False}), "legacy").enable


def test_true_entropy_estimator_needs_the_model_entropy():
    with pytest.raises(ConfigError, match="calculate_entropy=true"):
        check_run_config(_config({"enable": True, "estimator": "entropy"}), "v1")
    assert check_run_config(_config({"enable": True, "estimator": "entropy"}, calculate_entropy=True), "v1").enable
    assert check_run_config(_config({"enable": True, "estimator": "nll"}), "v1").enable


def test_bad_keys_fail_at_start():
    with pytest.raises(ConfigError, match="algorithm.entropy_shaping.lambda"):
        check_run_config(_config({"enable": True, "lambda": 0.1}), "v1")


def test_checks_are_installed_on_both_trainers():
    import verl  # noqa: F401  (loads the plugin)
    from verl.trainer.ppo import ray_trainer
    from verl.trainer.ppo.v1 import trainer_base

    assert trainer_base.PPOTrainer.init.__verl_difficulty_extension__.endswith(":PPOTrainer.init")
    # the legacy trainer refuses shaping when it starts, before verl's own init_workers runs
    legacy = type("Trainer", (), {"config": _config({"enable": True})})()
    with pytest.raises(ConfigError, match="works on verl's v1 trainer only"):
        ray_trainer.RayPPOTrainer.init_workers(legacy)
