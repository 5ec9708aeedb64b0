"""diva_grpo as verl sees it: estimator through verl's compute_advantage, the tracker updated every step,
saved with verl's checkpoints and restored on resume (including after a kill), config and field errors."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from support import object_array, reference_diva, reference_step_table

from verl_difficulty.data.difficulty_store import read_snapshot
from verl_difficulty.verl_glue import diva_tracker, metrics


@pytest.fixture(autouse=True)
def fresh_tracker():
    diva_tracker.TRACKER.__init__()
    yield
    diva_tracker.TRACKER.__init__()


@pytest.fixture(scope="module")
def ray_trainer():
    import verl  # noqa: F401
    from verl.trainer.ppo import ray_trainer

    return ray_trainer


def family_batch(seed=0, variants=1, n=5, difficulty=True, acc=True):
    """Problems with an original and variants (distinct uids, shared problem_id), as DivaDataset emits."""
    rng = np.random.default_rng(seed)
    rewards, uids, problems, diffs, infos = [], [], [], [], []
    for p in range(6):
        for v in range(1 + variants):
            d = float(np.clip(5 + (v * 2 if p % 2 else -v * 2), 1, 9))
            for _ in range(n):
                uids.append(f"u{p}-{v}")
                problems.append(f"prob{p}")
                diffs.append(d)
                rewards.append(float(rng.integers(0, 2)))
                info = {"problem_id": f"prob{p}"}
                if difficulty:
                    info["difficulty"] = d
                infos.append(info)
    from verl import DataProto

    m = len(rewards)
    token_rewards = torch.zeros(m, 3)
    token_rewards[:, 2] = torch.tensor(rewards)
    non_tensors = {"uid": object_array(uids), "data_source": object_array(["geo"] * m),
                   "extra_info": object_array(infos)}
    if acc:
        non_tensors["acc"] = np.array(rewards, dtype=object)
    data = DataProto.from_dict(tensors={"token_level_rewards": token_rewards, "response_mask": torch.ones(m, 3)},
                               non_tensors=non_tensors)
    return data, rewards, uids, problems, diffs


def test_by_name_alone_matches_the_reference_and_updates_the_tracker(ray_trainer):
    data, rewards, uids, problems, diffs = family_batch()
    metrics.drain()
    out = ray_trainer.compute_advantage(data, adv_estimator="diva_grpo",
                                        config=OmegaConf.create({"adv_estimator": "diva_grpo"}))
    want = reference_diva(rewards, uids, problems, diffs, [True] * len(rewards), [3] * len(rewards))
    assert out.batch["advantages"][:, 0].tolist() == pytest.approx(want, abs=1e-5)
    # the tracker moved every problem by the paper rule from its mean accuracy over original + variants
    for p in set(problems):
        a = np.mean([r for r, q in zip(rewards, problems) if q == p])
        assert diva_tracker.TRACKER.difficulty[p] == pytest.approx(np.clip(5 + 4 * (0.5 - a), 1, 9))
    posted = metrics.drain()
    assert posted["diva/tracker/problems"] == 6 and sum(posted[f"diva/tracker/hist/{k}"] for k in range(1, 10)) == 6
    assert {"diva/difficulty_weight_mean", "diva/rrb_local_scale_mean", "diva/variant_fallback_prompts"} <= set(posted)


def test_step_table_on_overall_reward_as_in_the_released_code(ray_trainer):
    data, rewards, uids, problems, diffs = family_batch(seed=3, acc=False)
    cfg = OmegaConf.create({"diva_grpo": {"tracker_rule": "step_table", "tracker_signal": "reward", "rrb": "code",
                                     "batch_norm": "padded_tokens"}})
    out = ray_trainer.compute_advantage(data, adv_estimator="diva_grpo", config=cfg)
    want = reference_diva(rewards, uids, problems, diffs, [True] * len(rewards), [3] * len(rewards),
                          rrb="code", batch_norm="padded_tokens")
    assert out.batch["advantages"][:, 0].tolist() == pytest.approx(want, abs=1e-5)
    for p in set(problems):
        a = np.mean([r for r, q in zip(rewards, problems) if q == p])
        assert diva_tracker.TRACKER.difficulty[p] == reference_step_table(5.0, a)


def test_rows_without_difficulty_use_the_tracked_value(ray_trainer):
    diva_tracker.TRACKER.difficulty.update({"prob0": 8.0, "prob1": 2.0})
    data, rewards, uids, problems, _ = family_batch(difficulty=False)
    metrics.drain()
    out = ray_trainer.compute_advantage(data, adv_estimator="diva_grpo", config=OmegaConf.create({}))
    tracked = [8.0 if p == "prob0" else 2.0 if p == "prob1" else 5.0 for p in problems]
    want = reference_diva(rewards, uids, problems, tracked, [True] * len(rewards), [3] * len(rewards))
    assert out.batch["advantages"][:, 0].tolist() == pytest.approx(want, abs=1e-5)
    assert metrics.drain()["diva/difficulty_from_tracker_frac"] == 1.0


def test_missing_accuracy_says_how_to_fix(ray_trainer):
    data, *_ = family_batch(acc=False)
    with pytest.raises(ValueError, match=r"reward extra-info key 'acc'.*tracker_signal=reward"):
        ray_trainer.compute_advantage(data, adv_estimator="diva_grpo", config=OmegaConf.create({}))


def test_missing_problem_id_names_the_sample(ray_trainer):
    data, *_ = family_batch()
    data.non_tensor_batch["extra_info"][4] = {"difficulty": 5.0}
    with pytest.raises(ValueError, match=r"problem_id_key='extra_info\.problem_id': sample uid=u0-0 \(row 4"):
        ray_trainer.compute_advantage(data, adv_estimator="diva_grpo", config=OmegaConf.create({}))


@pytest.mark.parametrize("section, message", [
    ({"rrb": "both"}, r"algorithm\.diva_grpo\.rrb='both' must be one of paper, code, off"),
    ({"batch_norm": "tokens"}, r"batch_norm='tokens' must be one of response, padded_tokens"),
    ({"kappa": -1}, r"kappa=-1 must be a finite number >= 0"),
    ({"reward_range": 0}, r"reward_range=0 must be a finite number > 0"),
    ({"tracker_rule": "table"}, r"tracker_rule='table' must be one of paper, step_table"),
])
def test_invalid_settings_name_the_key(ray_trainer, section, message):
    data, *_ = family_batch()
    with pytest.raises(ValueError, match=message):
        ray_trainer.compute_advantage(data, adv_estimator="diva_grpo", config=OmegaConf.create({"diva_grpo": section}))


def test_fallback_variants_are_counted(ray_trainer):
    data, *_ = family_batch()
    infos = data.non_tensor_batch["extra_info"]
    for row in np.flatnonzero(data.non_tensor_batch["uid"] == "u2-1"):
        infos[row] = {**infos[row], "diva_fallback": "no_paraphrase"}
    metrics.drain()
    ray_trainer.compute_advantage(data, adv_estimator="diva_grpo", config=OmegaConf.create({}))
    assert metrics.drain()["diva/variant_fallback_prompts"] == 1


def test_checkpoint_hooks_are_installed_on_both_trainers(ray_trainer):
    from verl.trainer.ppo.v1.trainer_base import PPOTrainer

    for cls in (ray_trainer.RayPPOTrainer, PPOTrainer):
        assert hasattr(cls._save_checkpoint, "__verl_difficulty_wrapped__")
        assert hasattr(cls._load_checkpoint, "__verl_difficulty_wrapped__")


# A driver process: a fake trainer whose checkpoint methods are verl's, wrapped by the plugin exactly as on
# RayPPOTrainer / PPOTrainer (the verl bodies, which talk to worker groups, are replaced by folder writes).
DRIVER = textwrap.dedent(r"""
    import json, os, sys, time
    import numpy as np
    from omegaconf import OmegaConf
    from verl_difficulty.verl_glue import diva_tracker

    root, mode, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
    class Trainer:
        def __init__(self):
            self.config = OmegaConf.create({"algorithm": {"adv_estimator": "diva_grpo"}, "trainer": {
                "default_local_dir": root, "resume_mode": "auto", "resume_from_path": None}})
            self.global_steps = 0
        def _save_checkpoint(self):  # stands in for verl's body: it creates the step folder
            os.makedirs(os.path.join(root, f"global_step_{self.global_steps}"), exist_ok=True)
        def _load_checkpoint(self):  # verl's rule: resume from the latest global_step_N folder
            found = sorted(int(d.split("_")[-1]) for d in os.listdir(root) if d.startswith("global_step_"))
            self.global_steps = found[-1] if found else 0
    Trainer._load_checkpoint = diva_tracker.wrap_load_checkpoint(Trainer._load_checkpoint)
    Trainer._save_checkpoint = diva_tracker.wrap_save_checkpoint(Trainer._save_checkpoint)
    trainer = Trainer()
    trainer._load_checkpoint()
    print("RESUMED", json.dumps({"step": diva_tracker.TRACKER.step, "difficulty": diva_tracker.TRACKER.difficulty}),
          flush=True)
    rng = np.random.default_rng(trainer.global_steps)
    problems = np.array([f"p{i}" for i in range(50)], dtype=object)
    for step in range(trainer.global_steps + 1, trainer.global_steps + 1 + steps):
        diva_tracker.TRACKER.update(problems, rng.random(50), "paper", 4.0)
        trainer.global_steps = step
        if step % 2 == 0:
            trainer._save_checkpoint()
            print("SAVED", step, json.dumps(diva_tracker.TRACKER.difficulty), flush=True)
        if mode == "hang" and step == 4:
            while True:  # keep rewriting the live snapshot until killed
                diva_tracker.TRACKER.update(problems, rng.random(50), "paper", 4.0)
""")


def test_save_kill_resume_restores_the_saved_tracker_exactly(tmp_path):
    root = str(tmp_path / "ckpt")
    os.makedirs(root)
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, root, "hang", "10"], stdout=subprocess.PIPE, text=True)
    saved = {}
    for line in proc.stdout:
        if line.startswith("SAVED"):
            _, step, state = line.split(" ", 2)
            saved[int(step)] = json.loads(state)
            if int(step) == 4:
                break
    live_path = os.path.join(root, "verl_difficulty", "diva_tracker.json")
    deadline = time.monotonic() + 60
    while read_snapshot(live_path).step <= 5 and time.monotonic() < deadline:
        time.sleep(0.05)  # wait until the driver is rewriting the live snapshot in its loop
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # the live file is intact (atomic writes) although the process died mid-stream of writes
    live = read_snapshot(live_path)
    assert live.step > 5 and len(live.difficulty) == 50
    # the checkpoint holds exactly the state at step 4, and a resumed driver starts from it
    assert read_snapshot(os.path.join(root, "global_step_4", "verl_difficulty", "diva_tracker.json")).difficulty \
        == saved[4]
    out = subprocess.run([sys.executable, "-c", DRIVER, root, "run", "2"], capture_output=True, text=True, timeout=120)
    resumed = json.loads(out.stdout.split("RESUMED ", 1)[1].splitlines()[0])
    assert resumed["difficulty"] == saved[4] and resumed["step"] == 4
    assert "SAVED 6" in out.stdout


def test_fresh_run_starts_every_problem_at_5(tmp_path):
    out = subprocess.run([sys.executable, "-c", DRIVER, str(tmp_path), "run", "1"], capture_output=True, text=True,
                         timeout=120)
    assert 'RESUMED {"step": 0, "difficulty": {}}' in out.stdout, out.stderr


def test_singleton_groups_are_zero_and_warned_once(ray_trainer, caplog, monkeypatch):
    import logging

    from verl_difficulty.verl_glue import estimators

    monkeypatch.setattr(estimators, "_warned_singletons", False)
    data, *_ = family_batch(n=1)  # one response per prompt row: every local group is a singleton
    with caplog.at_level(logging.WARNING):
        out = ray_trainer.compute_advantage(data, adv_estimator="diva_grpo", config=OmegaConf.create({}))
        ray_trainer.compute_advantage(data, adv_estimator="diva_grpo", config=OmegaConf.create({}))
    assert [r for r in caplog.records if "alone in their prompt group" in r.message].__len__() == 1
    assert torch.isfinite(out.batch["advantages"]).all()
