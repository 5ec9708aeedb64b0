"""The OpenVLThinkerV2 recipe through verl 0.9.1's own entry point up to Ray start (DRY_RUN=1), at 1, 2 and 4
nodes of 8 GPUs and for every ablation row: the settings that matter land in the resolved config, and a bad
plugin key fails the launch."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import pytest
from recipe_support import dry_run, get, run_recipe

RECIPE = "openvlthinker_v2"
ABLATIONS = {  # row -> (estimator, entropy shaping, length shaping)
    "grpo": ("grpo", False, False),
    "g2rpo": ("g2rpo", False, False),
    "g2rpo_ent": ("g2rpo", True, False),
    "g2rpo_len": ("g2rpo", False, True),
    "full": ("g2rpo", True, True),
}
_WORK = Path(tempfile.mkdtemp(prefix="recipe_dry_run_"))


@functools.cache
def _config(nnodes: int, ablation: str, base_model: str = "qwen3-vl-8b") -> dict:
    return dry_run(RECIPE, cwd=_WORK, NNODES=str(nnodes), GPUS_PER_NODE="8", ABLATION=ablation,
                   BASE_MODEL=base_model, OUT=str(_WORK / "out"))


# the paper's published settings, whatever the row and the cluster size
PAPER = {
    "reward.reward_manager.name": "multitask",
    "reward.reward_kwargs.preset": "openvlthinker_v2",
    "reward.reward_kwargs.w_fmt": 0.1,
    "algorithm.accuracy_filter.enable": True,
    "algorithm.accuracy_filter.low": 0.01,
    "algorithm.accuracy_filter.high": 0.99,
    "algorithm.accuracy_filter.metric": "acc",
    "algorithm.accuracy_filter.max_gen_batches": 20,
    "algorithm.filter_groups.enable": False,
    "algorithm.use_kl_in_reward": False,
    "actor_rollout_ref.actor.use_kl_loss": False,
    "actor_rollout_ref.rollout.n": 8,
    "actor_rollout_ref.rollout.temperature": 1.0,
    "data.train_batch_size": 512,
    "actor_rollout_ref.actor.ppo_mini_batch_size": 128,
    "data.max_prompt_length": 16384,
    "data.max_response_length": 4096,
    "actor_rollout_ref.actor.optim.lr": 2e-6,
    "actor_rollout_ref.actor.optim.weight_decay": 0.01,
    "actor_rollout_ref.actor.clip_ratio_low": 0.2,
    "actor_rollout_ref.actor.clip_ratio_high": 0.3,
    "actor_rollout_ref.actor.loss_agg_mode": "token-mean",
    "trainer.total_epochs": 1,
    "trainer.save_freq": 100,
    "trainer.test_freq": 1,
    "trainer.resume_mode": "auto",
    "trainer.logger": ["console", "file"],
    "trainer.n_gpus_per_node": 8,
    "actor_rollout_ref.rollout.name": "vllm",
    "actor_rollout_ref.rollout.tensor_model_parallel_size": 1,
    "actor_rollout_ref.rollout.gpu_memory_utilization": 0.5,
    "actor_rollout_ref.rollout.val_kwargs.temperature": 0.7,
    "actor_rollout_ref.rollout.val_kwargs.top_p": 0.95,
    "actor_rollout_ref.rollout.val_kwargs.do_sample": True,
    "algorithm.g2rpo.task_key": "extra_info.problem_type",
    "algorithm.entropy_shaping.lambda_ent": 0.02,
    "algorithm.entropy_shaping.band": [0.2, 0.6],
    "algorithm.entropy_shaping.task_key": "extra_info.task_type",
}


@pytest.mark.parametrize("nnodes", [1, 2, 4])
def test_full_recipe_at_cluster_scale(nnodes):
    config = _config(nnodes, "full")
    assert get(config, "trainer.nnodes") == nnodes
    for key, value in PAPER.items():
        assert get(config, key) == value, key
    assert get(config, "algorithm.adv_estimator") == "g2rpo"
    # token budgets hold a whole prompt + response, for the update and the log-prob passes
    budget = get(config, "data.max_prompt_length") + get(config, "data.max_response_length")
    assert get(config, "actor_rollout_ref.actor.use_dynamic_bsz") is True
    assert get(config, "actor_rollout_ref.actor.ppo_max_token_len_per_gpu") >= budget
    assert get(config, "actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu") >= budget
    assert get(config, "actor_rollout_ref.rollout.max_model_len") >= budget
    assert get(config, "trainer.default_local_dir").endswith("checkpoints/qwen3-vl-8b-full")
    assert get(config, "actor_rollout_ref.model.path") == "Qwen/Qwen3-VL-8B-Instruct"
    assert get(config, "data.image_patch_size") == 16


@pytest.mark.parametrize("ablation", sorted(ABLATIONS))
def test_ablation_rows(ablation):
    estimator, entropy, length = ABLATIONS[ablation]
    config = _config(1, ablation)
    assert get(config, "algorithm.adv_estimator") == estimator
    assert get(config, "algorithm.entropy_shaping.enable") is entropy
    assert get(config, "reward.reward_kwargs.length_shaping") is length
    for key, value in PAPER.items():  # every row: same data, reward, filter and settings
        assert get(config, key) == value, (ablation, key)
    assert get(config, "trainer.experiment_name") == f"qwen3-vl-8b-{ablation}"


def test_qwen25vl_switch():
    config = _config(1, "full", "qwen2.5-vl-7b")
    assert get(config, "actor_rollout_ref.model.path") == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert get(config, "data.image_patch_size") == 14
    assert get(config, "algorithm.adv_estimator") == "g2rpo"


def test_extra_overrides_pass_through(tmp_path):
    config = dry_run(RECIPE, "trainer.save_freq=7", "algorithm.g2rpo.mode=single_stage", cwd=tmp_path,
                     OUT=str(tmp_path / "out"))
    assert get(config, "trainer.save_freq") == 7
    assert get(config, "algorithm.g2rpo.mode") == "single_stage"
    assert list(tmp_path.iterdir()) == []  # a dry run writes nothing (not even Hydra's outputs/)


@pytest.mark.parametrize("override, named", [
    ("+reward.reward_kwargs.wfmt=0.1", "reward.reward_kwargs.wfmt"),      # the multitask manager's options
    ("algorithm.g2rpo.mode=bogus", "algorithm.g2rpo.mode"),               # the estimator's settings
    ("algorithm.accuracy_filter.low=0.995", "algorithm.accuracy_filter.low"),
    ("algorithm.entropy_shaping.lambda=0.1", "lambda"),                   # not in the config: Hydra's error
    ("actor_rollout_ref.actor.ppo_max_token_len_per_gpu=100", "ppo_max_token_len_per_gpu"),  # verl's checks
])
def test_bad_settings_fail_the_dry_run(tmp_path, override, named):
    done = run_recipe(RECIPE, override, cwd=tmp_path, DRY_RUN="1", OUT=str(tmp_path / "out"))
    assert done.returncode != 0
    assert named in done.stderr + done.stdout
    assert "resolved config" not in done.stdout


def test_unknown_switch_values_fail(tmp_path):
    for env in ({"ABLATION": "g2rpo_both"}, {"BASE_MODEL": "qwen3-vl-32b"}):
        done = run_recipe(RECIPE, cwd=tmp_path, DRY_RUN="1", **env)
        assert done.returncode == 2 and next(iter(env)) in done.stderr
