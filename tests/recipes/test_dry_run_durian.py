"""The Durian recipe through verl 0.9.1's own entry point up to Ray start (DRY_RUN=1), at 1, 2 and 4 nodes of 8
GPUs and for every ALGO x METHOD: the settings that matter land in the resolved config, GRPO and DAPO differ
only where the algorithms do, and a bad key fails the launch."""

from __future__ import annotations

import functools
import json
import tempfile
from pathlib import Path

import pytest
from recipe_support import dry_run, get, run_recipe

RECIPE = "durian"
_WORK = Path(tempfile.mkdtemp(prefix="recipe_dry_run_durian_"))
COMBOS = [(algo, method) for algo in ("grpo", "dapo") for method in ("durian", "baseline")]


@functools.cache
def _config(nnodes: int, algo: str, method: str, **env: str) -> dict:
    return dry_run(RECIPE, cwd=_WORK, NNODES=str(nnodes), GPUS_PER_NODE="8", ALGO=algo, METHOD=method,
                   OUT=str(_WORK / "out"), **env)


# the paper's and EasyR1's settings, whatever ALGO, METHOD and the cluster size
COMMON = {
    "actor_rollout_ref.model.path": "Qwen/Qwen2.5-VL-7B-Instruct",
    "data.train_batch_size": 512,
    "actor_rollout_ref.actor.ppo_mini_batch_size": 128,
    "actor_rollout_ref.rollout.n": 8,
    "actor_rollout_ref.actor.optim.lr": 1e-6,
    "actor_rollout_ref.actor.optim.weight_decay": 0.01,
    "data.max_prompt_length": 4096,
    "data.max_response_length": 2048,
    "data.filter_overlong_prompts": True,
    "data.truncation": "error",
    "data.image_patch_size": 14,
    "actor_rollout_ref.actor.clip_ratio_low": 0.2,
    "actor_rollout_ref.actor.loss_agg_mode": "token-mean",
    "algorithm.use_kl_in_reward": False,
    "algorithm.filter_groups.enable": False,
    "algorithm.durian.alpha_ori": 0.1,
    "algorithm.durian.alpha_perc": 0.2,
    "algorithm.durian.alpha_reas": 0.7,
    "algorithm.durian.num_reasoning_buckets": 12,
    "algorithm.durian.perceptual_quantiles": [0.25, 0.75],
    "algorithm.durian.perceptual_thresholds": None,
    "algorithm.durian.entropy_key": "extra_info.visual_entropy",
    "actor_rollout_ref.rollout.temperature": 1.0,
    "actor_rollout_ref.rollout.name": "vllm",
    "actor_rollout_ref.rollout.tensor_model_parallel_size": 2,
    "actor_rollout_ref.rollout.gpu_memory_utilization": 0.6,
    "actor_rollout_ref.rollout.val_kwargs.do_sample": True,
    "actor_rollout_ref.rollout.val_kwargs.temperature": 0.6,
    "actor_rollout_ref.rollout.val_kwargs.top_p": 0.95,
    "actor_rollout_ref.rollout.val_kwargs.n": 1,
    "trainer.total_epochs": 15,
    "trainer.save_freq": 5,
    "trainer.test_freq": 5,
    "trainer.val_before_train": True,
    "trainer.resume_mode": "auto",
    "trainer.logger": ["console", "file"],
    "trainer.n_gpus_per_node": 8,
}
# what GRPO and DAPO differ in (EasyR1's GRPO defaults; its DAPO script and the DAPO paper)
BY_ALGO = {
    "grpo": {
        "actor_rollout_ref.actor.clip_ratio_high": 0.3,
        "actor_rollout_ref.actor.use_kl_loss": True,
        "actor_rollout_ref.actor.kl_loss_coef": 0.01,
        "actor_rollout_ref.actor.kl_loss_type": "low_var_kl",
        "algorithm.accuracy_filter.enable": False,
        "reward.reward_manager.name": "multitask",
        "reward.reward_kwargs.template": "think_boxed",
        "reward.reward_kwargs.w_fmt": 0.1,
        "reward.reward_kwargs.length_shaping": False,
    },
    "dapo": {
        "actor_rollout_ref.actor.clip_ratio_high": 0.28,
        "actor_rollout_ref.actor.use_kl_loss": False,
        "algorithm.accuracy_filter.enable": True,
        "algorithm.accuracy_filter.metric": "acc",
        "algorithm.accuracy_filter.low": 0.01,
        "algorithm.accuracy_filter.high": 0.99,
        "algorithm.accuracy_filter.max_gen_batches": 20,
        "reward.reward_manager.name": "dapo",
        "reward.custom_reward_function.path": "pkg://verl_difficulty.rewards",
        "reward.custom_reward_function.name": "compute_score",
        "reward.custom_reward_function.reward_kwargs.template": "think_boxed",
        "reward.custom_reward_function.reward_kwargs.w_fmt": 0.1,
        "reward.reward_kwargs.overlong_buffer_cfg.enable": True,
        "reward.reward_kwargs.overlong_buffer_cfg.len": 512,
        "reward.reward_kwargs.overlong_buffer_cfg.penalty_factor": 1.0,
        "reward.reward_kwargs.max_resp_len": 2048,
    },
}


def _check(config: dict, algo: str, method: str) -> None:
    for key, value in {**COMMON, **BY_ALGO[algo]}.items():
        assert get(config, key) == value, (algo, method, key)
    assert get(config, "algorithm.adv_estimator") == {"durian": "durian", "baseline": "grpo"}[method]
    assert get(config, "trainer.experiment_name") == f"qwen2.5-vl-7b-geo3k-{algo}-{method}"
    assert get(config, "trainer.default_local_dir").endswith(f"checkpoints/qwen2.5-vl-7b-geo3k-{algo}-{method}")
    # trained on the parquet the visual-entropy step writes; validated on the prepared test split
    assert get(config, "data.train_files").endswith("data/train.visual_entropy.parquet")
    assert get(config, "data.val_files").endswith("data/test.parquet")
    # token budgets hold a whole prompt + response, for the update and every log-prob pass
    budget = get(config, "data.max_prompt_length") + get(config, "data.max_response_length")
    for node in ("actor_rollout_ref.actor.ppo_max_token_len_per_gpu",
                 "actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu",
                 "actor_rollout_ref.ref.log_prob_max_token_len_per_gpu", "actor_rollout_ref.rollout.max_model_len"):
        assert get(config, node) >= budget, node
    assert get(config, "actor_rollout_ref.actor.use_dynamic_bsz") is True
    assert get(config, "actor_rollout_ref.rollout.max_num_batched_tokens") >= budget  # no chunked prefill


@pytest.mark.parametrize("nnodes", [1, 2, 4])
@pytest.mark.parametrize("algo, method", COMBOS)
def test_every_combination_at_cluster_scale(nnodes, algo, method):
    config = _config(nnodes, algo, method)
    assert get(config, "trainer.nnodes") == nnodes
    _check(config, algo, method)


@pytest.mark.parametrize("algo, method", COMBOS)
def test_baseline_differs_from_durian_only_in_the_estimator(algo, method):
    if method == "baseline":
        pytest.skip("compared from the durian side")
    durian, baseline = _config(1, algo, "durian"), _config(1, algo, "baseline")

    def same_run(config: dict, section: str) -> str:  # paths under the checkpoint dir name the experiment
        return json.dumps(dict(config[section], adv_estimator=None)).replace(get(config, "trainer.experiment_name"), "")

    for section in ("algorithm", "data", "actor_rollout_ref", "reward"):
        assert same_run(durian, section) == same_run(baseline, section), section
    assert get(durian, "algorithm.adv_estimator") == "durian" and get(baseline, "algorithm.adv_estimator") == "grpo"


def test_dataset_thresholds_switch(tmp_path):
    given = dry_run(RECIPE, cwd=tmp_path, PERCEPTUAL="dataset", PERCEPTUAL_THRESHOLDS="[3.25,4.5]",
                    OUT=str(tmp_path / "out"))
    assert get(given, "algorithm.durian.perceptual_thresholds") == [3.25, 4.5]
    stand_in = run_recipe(RECIPE, cwd=tmp_path, DRY_RUN="1", PERCEPTUAL="dataset", OUT=str(tmp_path / "out"))
    assert stand_in.returncode == 0 and "PERCEPTUAL=dataset" in stand_in.stderr


def test_extra_overrides_pass_through(tmp_path):
    config = dry_run(RECIPE, "trainer.save_freq=7", "algorithm.durian.confidence=sum", cwd=tmp_path,
                     OUT=str(tmp_path / "out"))
    assert get(config, "trainer.save_freq") == 7
    assert get(config, "algorithm.durian.confidence") == "sum"
    assert list(tmp_path.iterdir()) == []  # a dry run writes nothing


@pytest.mark.parametrize("algo, override, named", [
    ("grpo", "algorithm.durian.num_reasoning_buckets=0", "num_reasoning_buckets"),    # the estimator's settings
    ("grpo", "+reward.reward_kwargs.templat=think_boxed", "reward.reward_kwargs.templat"),  # multitask options
    ("dapo", "+reward.custom_reward_function.reward_kwargs.w_fmt=2",                  # our compute_score's
     "reward.custom_reward_function.reward_kwargs"),
    ("dapo", "reward.reward_kwargs.max_resp_len=4096", "max_resp_len"),               # overlong vs the length cap
    ("dapo", "reward.reward_kwargs.overlong_buffer_cfg.len=0", "overlong_buffer_cfg.len"),
    ("dapo", "~reward.reward_kwargs.overlong_buffer_cfg.log", "log"),                 # verl's manager reads it
    ("dapo", "algorithm.accuracy_filter.low=0.995", "algorithm.accuracy_filter.low"),
    ("grpo", "algorithm.durian.alpha=0.1", "alpha"),                                  # not in the config: Hydra
    ("grpo", "actor_rollout_ref.actor.ppo_max_token_len_per_gpu=100", "ppo_max_token_len_per_gpu"),
])
def test_bad_settings_fail_the_dry_run(tmp_path, algo, override, named):
    done = run_recipe(RECIPE, override, cwd=tmp_path, DRY_RUN="1", ALGO=algo, OUT=str(tmp_path / "out"))
    assert done.returncode != 0
    assert named in done.stderr + done.stdout
    assert "resolved config" not in done.stdout


def test_unknown_switch_values_fail(tmp_path):
    for env in ({"ALGO": "ppo"}, {"METHOD": "durian_only"}, {"PERCEPTUAL": "image"}):
        done = run_recipe(RECIPE, cwd=tmp_path, DRY_RUN="1", **env)
        assert done.returncode == 2 and next(iter(env)) in done.stderr


def test_geometry3k_fixtures_are_the_hub_layout_and_prepare_cleanly(tmp_path):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    from verl_difficulty.data.prepare import main as prepare
    from verl_difficulty.recipes.fixtures import FIXTURES, lenient

    train = FIXTURES["geometry3k"](tmp_path / "fx", n=12)
    assert train == tmp_path / "fx" / "data" / "train-00000-of-00001.parquet"
    test = train.with_name("test-00000-of-00001.parquet")
    schema = pq.read_schema(train)
    assert schema.names == ["images", "problem", "answer"]
    assert schema.field("images").type == pa.list_(pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    # the datasets library reads it back with the hub's features (a list of Image)
    loaded = datasets.load_dataset("parquet", data_files=str(train), split="train")
    assert len(loaded) == 12 and loaded[0]["images"][0].size == (56, 56)
    assert all(r["problem"].startswith("<image>") and r["answer"].isdigit() for r in pq.read_table(train).to_pylist())
    assert pq.read_metadata(test).num_rows == 3

    out = tmp_path / "train.parquet"
    assert prepare(["geometry3k", str(train), str(out), "--no-progress", "--strict"]) == 0
    rows = pq.read_table(lenient(out, tmp_path / "lenient.parquet")).to_pylist()
    assert len(rows) == 12
    marks = {(r["extra_info"]["problem_type"], r["extra_info"]["template"]) for r in rows}
    assert marks == {("math", "lenient_integer")}
