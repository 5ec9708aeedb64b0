"""Every recipe's whole flow on this CPU (``REHEARSAL=cpu bash recipes/<paper>/run.sh``): data preparation on
fixtures in the source's published format, 2 real verl 0.9.1 steps on the tiny assets with the recipe's
estimator, reward manager, shaping and filter, a checkpoint, and the merged Hugging Face folder.

Serialize manual runs with other verl runs:
``flock /tmp/e2e.lock python -m pytest -q tests/e2e/test_recipe_rehearsals.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from recipe_support import run_recipe

pytestmark = pytest.mark.e2e

TIMEOUT_S = 900


def _metrics(path: Path) -> list[dict]:
    return [json.loads(line)["data"] for line in path.read_text().splitlines() if line.strip()]


def _load_merged(folder: Path):
    from transformers import AutoConfig, AutoModelForImageTextToText

    config = AutoConfig.from_pretrained(folder)
    return config, AutoModelForImageTextToText.from_pretrained(folder)


def test_openvlthinker_v2_rehearsal(tmp_path):
    done = run_recipe("openvlthinker_v2", cwd=tmp_path, timeout=TIMEOUT_S, REHEARSAL="cpu",
                      OUT=str(tmp_path / "out"))
    out = tmp_path / "out" / "openvlthinker_v2"
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    # the recipe's own data step ran on the fixtures (the authors' JSON layout + PNGs)
    assert (out / "fixtures" / "train.json").is_file() and (out / "data" / "train.parquet").is_file()
    steps = _metrics(out / "metrics.jsonl")
    assert len(steps) == 2
    for m in steps:
        # the estimator's own metrics, per task (keyed on extra_info.problem_type as in the recipe)
        assert any(k.startswith("g2rpo/") for k in m), sorted(m)
        # the multitask manager scored the step (its per-task length metrics) ...
        assert any(k.startswith("length/") for k in m), sorted(m)
        # ... the accuracy band filtered it, and the entropy-band term ran in the actor loss
        assert "accuracy_filter/kept_groups" in m and "actor/entropy_shaping/reg" in m
        assert 0.01 < m["accuracy_filter/batch_group_mean/min"] <= m["accuracy_filter/batch_group_mean/max"] < 0.99
    command = (out / "command.txt").read_text()
    for setting in ("reward.reward_manager.name=multitask", "+reward.reward_kwargs.preset=openvlthinker_v2",
                    "+reward.reward_kwargs.length_shaping=true", "algorithm.entropy_shaping.enable=true",
                    "algorithm.accuracy_filter.enable=True", "actor_rollout_ref.rollout.name=hf"):
        assert setting in command
    config, model = _load_merged(out / "hf")
    assert config.model_type == "qwen2_5_vl"
    assert sum(p.numel() for p in model.parameters()) > 0


def test_durian_rehearsal(tmp_path):
    """DAPO + Durian, the configuration that exercises the most (estimator, dapo manager with its overlong
    buffer, dynamic sampling on accuracy), with the evaluation step on tiny benchmark fixtures."""
    done = run_recipe("durian", cwd=tmp_path, timeout=TIMEOUT_S, REHEARSAL="cpu", REHEARSAL_EVAL="1",
                      ALGO="dapo", METHOD="durian", OUT=str(tmp_path / "out"))
    out = tmp_path / "out" / "durian"
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    # Geometry3K's hub layout -> prepare -> visual entropy with the tiny policy's own vision tower
    assert (out / "fixtures" / "data" / "train-00000-of-00001.parquet").is_file()
    report = json.loads((out / "data" / "train.visual_entropy.parquet.report.json").read_text())
    assert report["backend"] == "encoder:qwen2_5_vl" and report["rows_with_value"] == report["rows"] > 0
    steps = _metrics(out / "metrics.jsonl")
    assert len(steps) == 2
    for m in steps:
        # Durian's own metrics: every prompt had a visual entropy, and the batch's perceptual cut points
        assert m["durian/no_image_frac"] == 0.0, sorted(m)
        assert m["durian/perceptual/threshold_low"] <= m["durian/perceptual/threshold_high"]
        assert any(k.startswith("durian/reasoning/") for k in m)
        # dynamic sampling on the reward's accuracy: the training groups are neither all wrong nor all right
        assert "accuracy_filter/kept_groups" in m
        assert 0.01 < m["accuracy_filter/batch_group_mean/min"] <= m["accuracy_filter/batch_group_mean/max"] < 0.99
        # the dapo manager's overlong penalty: the scorer alone gives scores in [0, 1]
        assert m["response_length/clip_ratio"] > 0 and m["critic/score/min"] < 0
    command = (out / "command.txt").read_text()
    for setting in ("algorithm.adv_estimator=durian", "reward.reward_manager.name=dapo",
                    "reward.custom_reward_function.path=pkg://verl_difficulty.rewards",
                    "+reward.reward_kwargs.overlong_buffer_cfg.enable=True", "algorithm.accuracy_filter.enable=True",
                    "actor_rollout_ref.actor.clip_ratio_high=0.28", "actor_rollout_ref.rollout.name=hf"):
        assert setting in command
    config, model = _load_merged(out / "hf")
    assert config.model_type == "qwen2_5_vl"
    assert sum(p.numel() for p in model.parameters()) > 0
    # the recipe's last step: the merged model on tiny fixtures of the paper's benchmarks
    results = (out / "eval" / "results.md").read_text()
    assert "Durian" in results and "MathVerse" in results and "HallusionBench" in results


def test_diva_grpo_rehearsal(tmp_path):
    done = run_recipe("diva_grpo", cwd=tmp_path, timeout=TIMEOUT_S, REHEARSAL="cpu", VARIANTS="1",
                      OUT=str(tmp_path / "out"))
    out = tmp_path / "out" / "diva_grpo"
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    # the authors' EasyR1 parquet -> prepare diva -> generated assets (tiny random Qwen2) -> attached
    import pyarrow.parquet as pq

    assert (out / "fixtures" / "train.parquet").is_file()
    rows = pq.read_table(out / "data" / "train_diva.parquet").to_pylist()
    assets = (out / "data" / "assets.jsonl").read_text().splitlines()
    assert len(assets) == len(rows) > 0
    assert all(r["extra_info"]["paraphrases"] and r["extra_info"]["think_steps"] for r in rows)
    ids = {r["extra_info"]["problem_id"] for r in rows}
    steps = _metrics(out / "metrics.jsonl")
    assert len(steps) == 2
    for m in steps:
        # DIVA's own metrics: both advantage terms, the tracker, the variants' asset fallbacks
        assert m["diva/local_abs_mean"] >= 0 and m["diva/global_abs_mean"] >= 0, sorted(m)
        assert m["diva/variant_fallback_prompts"] == 0 and m["diva/difficulty_from_tracker_frac"] == 0
        assert any(k.startswith("diva/tracker/hist/") for k in m)
        # the multitask manager scored the step (its per-source length metrics)
        assert any(k.startswith("length/mmk12/") for k in m), sorted(m)
    # every problem starts at D = 5, its variant at 6: the difficulty weighting of the global term acts
    assert steps[0]["diva/difficulty_weight_mean"] != 1.0
    # 8 rows per step = 4 originals + their variant: 8 problems tracked after 2 steps
    assert steps[-1]["diva/tracker/problems"] == 8
    command = (out / "command.txt").read_text()
    for setting in ("algorithm.adv_estimator=diva_grpo", "reward.reward_manager.name=multitask",
                    "data.custom_cls.name=PilVisionDivaDataset", "data.diva.num_variants=1", "data.shuffle=False",
                    "algorithm.diva_grpo.tracker_signal=accuracy", "actor_rollout_ref.rollout.name=hf"):
        assert setting in command
    # the tracker is saved in the checkpoint verl resumes from
    tracker = json.loads((out / "checkpoints" / "global_step_2" / "verl_difficulty" / "diva_tracker.json").read_text())
    assert tracker["step"] == 2 and tracker["rule"] == "paper"
    assert len(tracker["difficulty"]) == 8 and set(tracker["difficulty"]) <= ids
    assert all(1 <= d <= 9 for d in tracker["difficulty"].values())
    config, model = _load_merged(out / "hf")
    assert config.model_type == "qwen2_5_vl"
    assert sum(p.numel() for p in model.parameters()) > 0
