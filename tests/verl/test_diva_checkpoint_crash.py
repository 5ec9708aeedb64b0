"""The DIVA tracker across a crash inside verl's checkpoint save, on verl's real `_save_checkpoint` /
`_load_checkpoint` bodies (both trainers; worker groups and dataloader stubbed), and resuming from
checkpoints that lack the tracker's snapshot."""

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from omegaconf import OmegaConf

from verl_difficulty.data.difficulty_store import DifficultySnapshot, read_snapshot, write_snapshot
from verl_difficulty.verl_glue import diva_tracker

LIVE = os.path.join("verl_difficulty", "diva_tracker.json")

# A driver process running verl's own checkpoint methods, as the plugin wraps them on the real classes. It kills
# itself (SIGKILL) at the last moment of a save after verl wrote latest_checkpointed_iteration.txt: inside verl's
# body (v1: the checkpoint callback runs right after the marker) or as the save returns (legacy: the marker is
# its last act); and, were the tracker's snapshot written after the marker, between the two.
DRIVER = textwrap.dedent(r"""
    import json, os, signal, sys
    import numpy as np
    from omegaconf import OmegaConf
    import verl  # noqa: F401 - loads the plugin, which wraps both trainers' checkpoint methods
    from verl.trainer.ppo.ray_trainer import RayPPOTrainer
    from verl.trainer.ppo.v1.trainer_base import PPOTrainer
    from verl_difficulty.verl_glue import diva_tracker

    root, which, steps, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    class V1Trainer(PPOTrainer):  # the v1 base leaves its rollout hooks abstract
        def on_sample_end(self, *args, **kwargs):
            pass
        def on_step_end(self, *args, **kwargs):
            pass
    cls = {"legacy": RayPPOTrainer, "v1": V1Trainer}[which]
    assert hasattr(cls._save_checkpoint, "__verl_difficulty_wrapped__")
    marker = os.path.join(root, "latest_checkpointed_iteration.txt")

    def marked(step):
        return os.path.exists(marker) and open(marker).read().strip() == str(step)

    def die():
        print("KILLED", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

    class Workers:
        def save_checkpoint(self, path, remote, step, max_ckpt_to_keep=None):
            os.makedirs(path, exist_ok=True)
            open(os.path.join(path, "model.bin"), "w").write(str(step))
        def load_checkpoint(self, path=None, del_local_after_load=False, local_path=None):
            pass

    class Loader:
        def state_dict(self):
            return {}
        def load_state_dict(self, state):
            pass
        def __len__(self):
            return 1000

    class Callback:
        def on_save(self, trainer, global_step, **kwargs):
            if global_step == kill_at:
                die()

    save_snapshot = diva_tracker.TRACKER.save_to_checkpoint
    def save_to_checkpoint(folder):  # the crash window, if the snapshot came after verl's marker
        if marked(int(folder.rsplit("_", 1)[-1])) and int(folder.rsplit("_", 1)[-1]) == kill_at:
            die()
        save_snapshot(folder)
    diva_tracker.TRACKER.save_to_checkpoint = save_to_checkpoint

    trainer = object.__new__(cls)
    trainer.config = OmegaConf.create({
        "algorithm": {"adv_estimator": "diva_grpo"},
        "trainer": {"default_local_dir": root, "resume_mode": "auto", "resume_from_path": None,
                    "default_hdfs_dir": None, "del_local_ckpt_after_load": False},
        "actor_rollout_ref": {"actor": {"checkpoint": {"async_save": False}}},
    })
    trainer.global_steps = 0
    trainer.actor_rollout_wg, trainer.train_dataloader, trainer.checkpoint_callback = Workers(), Loader(), Callback()
    trainer.use_critic, trainer.trainer_mode = False, "sync"
    trainer._load_checkpoint()
    state = {"step": diva_tracker.TRACKER.step, "difficulty": diva_tracker.TRACKER.difficulty}
    print("RESUMED", trainer.global_steps, json.dumps(state), flush=True)
    rng = np.random.default_rng(trainer.global_steps)
    problems = np.array([f"p{i}" for i in range(50)], dtype=object)
    for step in range(trainer.global_steps + 1, trainer.global_steps + 1 + steps):
        trainer.global_steps = step
        diva_tracker.TRACKER.update(problems, rng.random(50), "paper", 4.0)
        if step % 2 == 0:
            print("SAVING", step, json.dumps(diva_tracker.TRACKER.difficulty), flush=True)
            trainer._save_checkpoint()
            if step == kill_at:
                die()
""")


def drive(root, which, steps, kill_at=-1):
    out = subprocess.run([sys.executable, "-c", DRIVER, str(root), which, str(steps), str(kill_at)],
                         capture_output=True, text=True, timeout=300)
    lines = out.stdout.splitlines()
    saving = {int(line.split(" ", 2)[1]): json.loads(line.split(" ", 2)[2]) for line in lines
              if line.startswith("SAVING")}
    resumed = next((line.split(" ", 2) for line in lines if line.startswith("RESUMED")), None)
    return out, saving, resumed


@pytest.mark.parametrize("which", ["legacy", "v1"])
def test_kill_right_after_verl_marks_the_checkpoint_keeps_the_tracker(tmp_path, which):
    out, saving, _ = drive(tmp_path, which, steps=10, kill_at=4)
    assert out.returncode == -signal.SIGKILL and "KILLED" in out.stdout, out.stderr[-3000:]
    # verl declared global_step_4 complete before the process died
    assert (tmp_path / "latest_checkpointed_iteration.txt").read_text().strip() == "4"
    assert read_snapshot(str(tmp_path / "global_step_4" / LIVE)).difficulty == saving[4]

    out, _, resumed = drive(tmp_path, which, steps=2)
    assert out.returncode == 0, out.stderr[-3000:]
    step, state = int(resumed[1]), json.loads(resumed[2])
    assert step == 4 and state["step"] == 4
    assert state["difficulty"] == saving[4]  # not reset to 5
    assert len(state["difficulty"]) == 50 and set(state["difficulty"].values()) != {5.0}
    # the live file continues from step 4's state (two more updates), not from an empty tracker
    live = read_snapshot(str(tmp_path / LIVE))
    assert live.step == 6 and len(live.difficulty) == 50


# ---------------------------------------------------------------- resuming from a checkpoint without a snapshot


class Trainer:
    """verl's resume rule for trainer.resume_mode=auto: the folder named by latest_checkpointed_iteration.txt."""

    def __init__(self, root):
        self.config = OmegaConf.create({"algorithm": {"adv_estimator": "diva_grpo"}, "trainer": {
            "default_local_dir": str(root), "resume_mode": "auto", "resume_from_path": None}})
        self.global_steps = 0

    def _load_checkpoint(self):
        marker = os.path.join(self.config.trainer.default_local_dir, "latest_checkpointed_iteration.txt")
        self.global_steps = int(open(marker).read()) if os.path.exists(marker) else 0


Trainer._load_checkpoint = diva_tracker.wrap_load_checkpoint(Trainer._load_checkpoint)


def state(step, value):
    return DifficultySnapshot(difficulty={"p0": value, "p1": 9.0 - value + 1.0}, step=step)


@pytest.fixture
def run_root(tmp_path):
    diva_tracker.TRACKER.__init__()
    (tmp_path / "global_step_6").mkdir()  # verl marked step 6 complete, without a tracker snapshot in it
    (tmp_path / "latest_checkpointed_iteration.txt").write_text("6")
    yield tmp_path
    diva_tracker.TRACKER.__init__()


def test_live_file_holding_exactly_that_step_is_restored(run_root, caplog):
    write_snapshot(str(run_root / LIVE), state(6, 7.0))
    with caplog.at_level(logging.WARNING):
        Trainer(run_root)._load_checkpoint()
    assert diva_tracker.TRACKER.difficulty == {"p0": 7.0, "p1": 3.0} and diva_tracker.TRACKER.step == 6
    assert "holds the tracker after step 6" in caplog.text
    assert read_snapshot(str(run_root / LIVE)).difficulty == {"p0": 7.0, "p1": 3.0}


def test_otherwise_the_previous_complete_checkpoint_is_restored_and_the_live_file_kept(run_root, caplog):
    write_snapshot(str(run_root / "global_step_2" / LIVE), state(2, 6.0))
    write_snapshot(str(run_root / "global_step_4" / LIVE), state(4, 8.0))
    write_snapshot(str(run_root / LIVE), state(9, 2.0))  # ahead of the checkpoint: not step 6's state
    with caplog.at_level(logging.WARNING):
        Trainer(run_root)._load_checkpoint()
    assert diva_tracker.TRACKER.difficulty == {"p0": 8.0, "p1": 2.0}  # global_step_4's
    assert diva_tracker.TRACKER.step == 6  # counted from the step verl resumed at
    assert "previous complete checkpoint" in caplog.text and "global_step_4" in caplog.text
    assert read_snapshot(str(run_root / LIVE) + ".bak").difficulty == {"p0": 2.0, "p1": 8.0}


def test_with_no_snapshot_anywhere_the_tracker_restarts_and_says_so(run_root, caplog):
    with caplog.at_level(logging.WARNING):
        Trainer(run_root)._load_checkpoint()
    assert diva_tracker.TRACKER.difficulty == {} and "difficulties restart at 5" in caplog.text


def test_damaged_snapshot_is_an_error_naming_the_file(run_root):
    path = run_root / "global_step_6" / LIVE
    write_snapshot(str(path), state(6, 5.0))
    payload = json.loads(path.read_text())
    payload["difficulty"]["p0"] = 50.0
    path.write_text(json.dumps(payload))
    with pytest.raises(ValueError, match=r"diva_tracker\.json: problem 'p0' has difficulty 50\.0 .*\[1, 9\]"):
        Trainer(run_root)._load_checkpoint()
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not a verl-difficulty DIVA tracker snapshot"):
        Trainer(run_root)._load_checkpoint()
