"""The DIVA-GRPO recipe through verl 0.9.1's own entry point up to Ray start (DRY_RUN=1), at 1, 2 and 4 nodes of
8 GPUs, with one and three variants, DIVA and its GRPO baseline, the paper's and the released code's modes: the
settings that matter land in the resolved config, and a bad key or batch size fails the launch."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import pytest
from recipe_support import dry_run, get, run_recipe

RECIPE = "diva_grpo"
_WORK = Path(tempfile.mkdtemp(prefix="recipe_dry_run_diva_"))


@functools.cache
def _config(nnodes: int = 1, variants: int = 1, method: str = "diva", mode: str = "paper") -> dict:
    return dry_run(RECIPE, cwd=_WORK, NNODES=str(nnodes), GPUS_PER_NODE="8", VARIANTS=str(variants), METHOD=method,
                   DIVA_MODE=mode, OUT=str(_WORK / "out"))


# the published settings, whatever the method, mode and cluster size
PAPER = {
    "actor_rollout_ref.model.path": "Qwen/Qwen2.5-VL-7B-Instruct",
    "reward.reward_manager.name": "multitask",
    "reward.reward_kwargs.template": "think_boxed",
    "reward.reward_kwargs.task_type": "math",
    "reward.reward_kwargs.w_fmt": 0.1,
    "reward.reward_kwargs.length_shaping": False,
    "data.custom_cls.path": "pkg://verl_difficulty.data.diva_dataset",
    "data.custom_cls.name": "DivaDataset",
    "data.shuffle": False,
    "data.train_batch_size": 128,
    "actor_rollout_ref.actor.ppo_mini_batch_size": 128,
    "actor_rollout_ref.rollout.n": 5,
    "actor_rollout_ref.rollout.temperature": 1.0,
    "actor_rollout_ref.rollout.top_p": 1.0,
    "data.max_prompt_length": 2048,
    "data.max_response_length": 4096,
    "actor_rollout_ref.actor.optim.lr": 1e-6,
    "actor_rollout_ref.actor.optim.weight_decay": 0.01,
    "actor_rollout_ref.actor.use_kl_loss": False,
    "algorithm.use_kl_in_reward": False,
    "actor_rollout_ref.actor.clip_ratio_low": 0.2,
    "actor_rollout_ref.actor.clip_ratio_high": 0.3,
    "actor_rollout_ref.actor.clip_ratio_c": 3.0,
    "actor_rollout_ref.actor.loss_agg_mode": "token-mean",
    "algorithm.filter_groups.enable": False,
    "trainer.total_epochs": 5,
    "trainer.save_freq": 1,
    "trainer.max_actor_ckpt_to_keep": 10,
    "trainer.test_freq": 10,
    "trainer.val_before_train": True,
    "trainer.resume_mode": "auto",
    "trainer.logger": ["console", "file"],
    "trainer.n_gpus_per_node": 8,
    "actor_rollout_ref.rollout.name": "vllm",
    "actor_rollout_ref.rollout.tensor_model_parallel_size": 2,
    "actor_rollout_ref.rollout.gpu_memory_utilization": 0.6,
    "actor_rollout_ref.rollout.val_kwargs.temperature": 0.6,
    "actor_rollout_ref.rollout.val_kwargs.top_p": 0.95,
    "actor_rollout_ref.rollout.val_kwargs.n": 1,
    "algorithm.diva_grpo.kappa": 0.1,
    "algorithm.diva_grpo.eta": 4.0,
    "algorithm.diva_grpo.local_weight": 1.0,
    "algorithm.diva_grpo.global_weight": 1.0,
    "algorithm.diva_grpo.reward_range": 1.0,
    "algorithm.diva_grpo.accuracy_key": "acc",
}
MODES = {  # DIVA_MODE -> what differs between the paper and the authors' released code
    "paper": {"algorithm.diva_grpo.batch_norm": "response", "algorithm.diva_grpo.rrb": "paper",
              "algorithm.diva_grpo.tracker_rule": "paper", "algorithm.diva_grpo.tracker_signal": "accuracy",
              "data.diva.variant_mode": "uniform", "data.diva.only_available_transforms": True,
              "data.diva.shuffle_families": True},
    "released": {"algorithm.diva_grpo.batch_norm": "padded_tokens",
                 "algorithm.diva_grpo.padded_width": "max_response_length",
                 "algorithm.diva_grpo.rrb": "code", "algorithm.diva_grpo.tracker_rule": "step_table",
                 "algorithm.diva_grpo.tracker_signal": "reward", "data.diva.variant_mode": "released",
                 "data.diva.only_available_transforms": False, "data.diva.shuffle_families": False},
}


def _check_paper(config: dict, where) -> None:
    for key, value in PAPER.items():
        assert get(config, key) == value, (where, key)


@pytest.mark.parametrize("nnodes", [1, 2, 4])
def test_diva_at_cluster_scale(nnodes):
    config = _config(nnodes)
    assert get(config, "trainer.nnodes") == nnodes
    _check_paper(config, nnodes)
    assert get(config, "algorithm.adv_estimator") == "diva_grpo"
    assert get(config, "data.diva.num_variants") == 1
    for key, value in MODES["paper"].items():
        assert get(config, key) == value, key
    # token budgets hold a whole prompt + response, for the update and the log-prob passes
    budget = get(config, "data.max_prompt_length") + get(config, "data.max_response_length")
    assert get(config, "actor_rollout_ref.actor.use_dynamic_bsz") is True
    assert get(config, "actor_rollout_ref.actor.ppo_max_token_len_per_gpu") >= budget
    assert get(config, "actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu") >= budget
    assert get(config, "actor_rollout_ref.rollout.max_model_len") >= budget
    # the tracker's live file sits with the checkpoints (saved into each one, restored on resume)
    checkpoints = get(config, "trainer.default_local_dir")
    assert checkpoints.endswith("checkpoints/qwen2.5-vl-7b-diva-v1-paper")
    assert get(config, "algorithm.diva_grpo.tracker_path") == f"{checkpoints}/verl_difficulty/diva_tracker.json"
    assert get(config, "data.diva.tracker_path") == get(config, "algorithm.diva_grpo.tracker_path")


@pytest.mark.parametrize("nnodes, variants, mode", [(4, 3, "paper"), (2, 3, "released"), (1, 1, "released")])
def test_variants_and_modes(nnodes, variants, mode):
    config = _config(nnodes, variants, "diva", mode)
    _check_paper(config, (variants, mode))
    assert get(config, "algorithm.adv_estimator") == "diva_grpo"
    assert get(config, "data.diva.num_variants") == variants
    assert get(config, "data.train_batch_size") % (1 + variants) == 0  # whole families per batch
    for key, value in MODES[mode].items():
        assert get(config, key) == value, (mode, key)
    assert get(config, "trainer.experiment_name") == f"qwen2.5-vl-7b-diva-v{variants}-{mode}"


@pytest.mark.parametrize("nnodes", [1, 4])
def test_grpo_baseline_on_the_same_data(nnodes):
    config, diva = _config(nnodes, 1, "grpo"), _config(nnodes)
    _check_paper(config, "grpo")
    assert get(config, "algorithm.adv_estimator") == "grpo"
    assert get(config, "algorithm.norm_adv_by_std_in_grpo") is True
    assert get(config, "data.diva.num_variants") == 0  # the same dataset class and order, originals only
    assert get(config, "trainer.experiment_name") == "qwen2.5-vl-7b-grpo"
    assert get(config, "data.train_files").endswith("data/train.parquet")  # no asset step for the baseline
    assert get(diva, "data.train_files").endswith("data/train_diva.parquet")
    assert get(config, "data.val_files") == get(diva, "data.val_files")


def test_extra_overrides_pass_through(tmp_path):
    config = dry_run(RECIPE, "algorithm.diva_grpo.kappa=0.2", "data.diva.variant_mode=released", cwd=tmp_path,
                     OUT=str(tmp_path / "out"))
    assert get(config, "algorithm.diva_grpo.kappa") == 0.2
    assert get(config, "data.diva.variant_mode") == "released"
    assert list(tmp_path.iterdir()) == []  # a dry run writes nothing (no data step, no Hydra outputs/)


@pytest.mark.parametrize("env, override, named", [
    ({}, "+data.diva.num_variant=2", "num_variant"),                       # DivaSettings: unknown key
    ({}, "data.diva.variant_mode=bogus", "data.diva.variant_mode"),        # DivaSettings: bad value
    ({"VARIANTS": "3"}, "data.train_batch_size=130", "data.train_batch_size=130"),  # 130 % (1 + 3) != 0
    ({}, "data.shuffle=True", "data.shuffle"),                             # scatters families
    ({}, "algorithm.diva_grpo.rrb=bogus", "algorithm.diva_grpo.rrb"),                # the estimator's settings
    ({}, "algorithm.diva_grpo.kappa_=0.1", "kappa_"),                           # not in the config: Hydra's error
])
def test_bad_settings_fail_the_dry_run(tmp_path, env, override, named):
    done = run_recipe(RECIPE, override, cwd=tmp_path, DRY_RUN="1", OUT=str(tmp_path / "out"), **env)
    assert done.returncode != 0
    assert named in done.stderr + done.stdout
    assert "resolved config" not in done.stdout


def test_unknown_switch_values_fail(tmp_path):
    for env in ({"METHOD": "dapo"}, {"VARIANTS": "2"}, {"DIVA_MODE": "code"}):
        done = run_recipe(RECIPE, cwd=tmp_path, DRY_RUN="1", **env)
        assert done.returncode == 2 and next(iter(env)) in done.stderr


# ---- the rehearsal's pieces for this recipe (pure, no verl run)


def test_rehearsal_keeps_diva_dataset_with_images_through_pil(tmp_path):
    from verl_difficulty.cpu import dataset as cpu_dataset
    from verl_difficulty.data.diva_dataset import DivaDataset
    from verl_difficulty.recipes.rehearsal import cpu_overrides, merge_overrides

    recipe = ["data.custom_cls.path=pkg://verl_difficulty.data.diva_dataset", "data.custom_cls.name=DivaDataset",
              "actor_rollout_ref.rollout.n=5"]
    merged = merge_overrides(recipe, cpu_overrides(recipe, {"vl_model": "/m"}, tmp_path, 2))
    assert "data.custom_cls.name=PilVisionDivaDataset" in merged
    assert "data.custom_cls.path=pkg://verl_difficulty.cpu.dataset" in merged
    # 8 prompts x n 5 over 2 ranks = 20 responses per rank: fixed micro-batches must divide it
    assert "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=5" in merged
    assert "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=5" in merged
    cls = cpu_dataset.PilVisionDivaDataset
    assert issubclass(cls, DivaDataset) and cls.__name__ == "PilVisionDivaDataset"
    # verl's agent loop asks the dataset class for the images: PIL here, not qwen-vl-utils (torchvision)
    from PIL import Image

    messages = [{"role": "user", "content": [{"type": "image", "image": Image.new("RGB", (56, 56))},
                                             {"type": "text", "text": "How many?"}]}]
    images, videos, _ = cls._process_multi_modal_info(messages, 14, None)
    assert len(images) == 1 and videos is None


def test_diva_fixtures_are_the_authors_layout_and_prepare_cleanly(tmp_path):
    import pyarrow.parquet as pq

    from verl_difficulty.data.prepare import main as prepare_main
    from verl_difficulty.recipes.fixtures import FIXTURES, lenient

    source = FIXTURES["diva"](tmp_path / "fx", n=12)
    table = pq.read_table(source)
    assert table.column_names == ["id", "problem", "answer", "images"]
    records = table.to_pylist()
    assert len(records) == 12 and all(r["problem"].startswith("<image>") and r["answer"].isdigit() for r in records)
    out = tmp_path / "train.parquet"
    assert prepare_main(["diva", str(source), str(out), "--no-progress", "--strict"]) == 0
    rows = pq.read_table(lenient(out, tmp_path / "lenient.parquet")).to_pylist()
    assert [r["extra_info"]["problem_id"] for r in rows] == [str(r["id"]) for r in records]
    assert {r["extra_info"]["template"] for r in rows} == {"lenient_integer"}  # problem_type math
