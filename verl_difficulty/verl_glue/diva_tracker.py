"""DIVA's difficulty tracker on verl's driver: updated every step, saved with verl's checkpoints.

Flow across verl's processes (README, "DIVA-GRPO: how the tracker reaches the dataset"):

1. The driver (verl's TaskRunner, where advantages are computed) owns one :class:`DifficultyTracker`.
   The ``diva_grpo`` estimator updates it every step from the batch and writes its snapshot file
   atomically (``verl_difficulty.data.difficulty_store``).
2. The dataset (``DivaDataset``, in the dataloader's worker processes) re-reads that file when it
   changes and picks each problem's variants from the tracked difficulty.
3. For an estimator that declares ``needs_difficulty_tracker`` (``diva_grpo`` does), ``_save_checkpoint`` (both
   trainers) writes the snapshot into
   ``global_step_N/verl_difficulty/diva_tracker.json`` BEFORE verl's body runs: verl's last act is to
   write ``latest_checkpointed_iteration.txt``, which declares the checkpoint complete, so no crash can
   leave a checkpoint marked complete without its tracker. ``_load_checkpoint`` restores the snapshot from
   the folder it resumes from, so a resumed run continues from exactly the saved state (the live file may
   be ahead of the checkpoint after a crash: the checkpoint wins). A checkpoint without a snapshot (saved
   without the plugin, or by versions that wrote it after verl's marker) is resumed, with a warning, from
   the live file when it holds exactly that step's state, else from the newest earlier checkpoint's
   snapshot; a live file that is then replaced is kept as ``<live>.bak``.
4. The same hook records what the estimator needs from the trainer's full config (it is handed only
   ``algorithm``): the reward manager (see :class:`RunContext`) and ``data.max_response_length``.

The snapshot path is ``algorithm.diva_grpo.tracker_path`` or ``<trainer.default_local_dir>/verl_difficulty/
diva_tracker.json``; the driver exports it as ``VERL_DIFFICULTY_DIVA_TRACKER`` and hands it to a dataset
that has a ``tracker_path`` attribute, before the dataloader starts its workers.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import numpy as np
import torch

from verl_difficulty.core.diva import update_difficulty
from verl_difficulty.data.difficulty_store import (
    DEFAULT_DIFFICULTY,
    DifficultySnapshot,
    read_snapshot,
    write_snapshot,
)
from verl_difficulty.settings import ENV_TRACKER_PATH  # the one name, shared with DivaDataset

logger = logging.getLogger(__name__)

__all__ = ["DifficultyTracker", "TRACKER", "RUN", "RunContext", "ENV_TRACKER_PATH", "CHECKPOINT_FILE",
           "patch_legacy_checkpoints", "patch_trainer_checkpoints", "patch_v1_checkpoints",
           "record_run_context"]

CHECKPOINT_FILE = os.path.join("verl_difficulty", "diva_tracker.json")


class DifficultyTracker:
    """Per-problem difficulty in [1, 9] (start 5), with its snapshot file."""

    def __init__(self) -> None:
        self.difficulty: dict[str, float] = {}
        self.step = 0
        self.rule = "paper"
        self.path: str | None = None

    def snapshot(self) -> DifficultySnapshot:
        return DifficultySnapshot(difficulty=dict(self.difficulty), step=self.step, rule=self.rule)

    def load(self, snapshot: DifficultySnapshot) -> None:
        self.difficulty = dict(snapshot.difficulty)
        self.step = snapshot.step
        self.rule = snapshot.rule

    def use_file(self, path: str | None, restore_from: str | None = None, step: int | None = None) -> None:
        """Make ``path`` the live snapshot, holding the state restored from ``restore_from`` (a checkpoint's
        snapshot) or, without one, a fresh tracker: like verl's model, a run that resumes from no checkpoint
        starts from scratch, whatever a previous run left in the live file. ``step``: the training step
        resumed at (the tracker counts one update per step from there)."""
        self.path = path
        if restore_from and os.path.exists(restore_from):
            self.load(read_snapshot(restore_from))
        else:
            self.load(DifficultySnapshot())
        if step is not None:
            self.step = step
        if path:
            write_snapshot(path, self.snapshot())
            os.environ[ENV_TRACKER_PATH] = path

    def lookup(self, problem_labels: np.ndarray) -> np.ndarray:
        """Tracked difficulty of each label (5.0 for a problem seen for the first time)."""
        values = map(self.difficulty.get, map(str, problem_labels), repeat(DEFAULT_DIFFICULTY))
        return np.fromiter(values, dtype=np.float64, count=len(problem_labels))

    def update(self, problem_labels: np.ndarray, signal: np.ndarray, rule: str, eta: float) -> dict[str, float]:
        """One step: every problem of the batch moves by the rule; returns metrics of the change."""
        old = self.lookup(problem_labels)
        new = update_difficulty(torch.from_numpy(old), torch.from_numpy(signal.astype(np.float64)), rule, eta).numpy()
        self.difficulty.update(zip(map(str, problem_labels), new.tolist()))
        self.step += 1
        self.rule = rule
        if self.path:
            write_snapshot(self.path, self.snapshot())
        change = new - old
        tracked = np.fromiter(self.difficulty.values(), dtype=np.float64, count=len(self.difficulty))
        histogram = np.bincount(np.clip(np.rint(tracked).astype(np.int64), 1, 9), minlength=10)[1:]
        metrics = {
            "diva/tracker/problems": float(len(self.difficulty)),
            "diva/tracker/difficulty_mean": float(tracked.mean()) if tracked.size else DEFAULT_DIFFICULTY,
            "diva/tracker/batch_change_abs_mean": float(np.abs(change).mean()) if change.size else 0.0,
            "diva/tracker/batch_harder": float((change > 0).sum()),
            "diva/tracker/batch_easier": float((change < 0).sum()),
        }
        metrics.update({f"diva/tracker/hist/{level}": float(count) for level, count in enumerate(histogram, 1)})
        return metrics

    def save_to_checkpoint(self, step_folder: str) -> None:
        write_snapshot(os.path.join(step_folder, CHECKPOINT_FILE), self.snapshot())


TRACKER = DifficultyTracker()  # one per driver process


# verl 0.9.1's own reward managers (verl/experimental/reward_loop/reward_manager): a scorer that returns a bare
# number becomes both the reward and reward extra info ``acc`` (and no ``score`` key); a scorer that returns a
# dict has all its keys copied, ``score`` included. Used when the registry cannot be asked.
VERL_REWARD_MANAGERS = frozenset({"naive", "dapo", "gdpo", "rate_limited", "remote"})


@dataclass
class RunContext:
    """What the estimator needs from the trainer's full config (verl hands it only ``algorithm``); recorded
    by the checkpoint-loading hook when the trainer starts, None where no trainer started (direct calls)."""

    reward_manager: str | None = None  # reward.reward_manager.name
    verl_reward_manager: bool | None = None  # one of verl's own managers (see VERL_REWARD_MANAGERS)
    max_response_length: int | None = None  # data.max_response_length


RUN = RunContext()


def _is_verl_manager(source: str, name: str) -> bool:
    """Whether verl resolves (source, name) to a class shipped in verl itself."""
    if source != "register":
        return False  # importlib: the user's own class
    try:
        from verl.experimental.reward_loop.reward_manager import get_reward_manager_cls

        return get_reward_manager_cls(name).__module__.startswith("verl.")
    except Exception:  # noqa: BLE001 - an unknown name fails in verl itself, with its own message
        return name in VERL_REWARD_MANAGERS


def record_run_context(config: Any) -> RunContext:
    """Fill :data:`RUN` from the trainer's full config. verl 0.9.1's main_ppo resolves the reward manager
    from ``reward.reward_manager`` (the legacy ``reward_model.reward_manager`` is copied there by verl's
    migration, which the fully-async entry point runs before the trainer exists)."""
    def get(node: Any, key: str) -> Any:
        return node.get(key) if node is not None and hasattr(node, "get") else None

    manager = get(get(config, "reward"), "reward_manager")
    name, source = get(manager, "name"), get(manager, "source") or "register"
    RUN.reward_manager = str(name) if name is not None else None
    RUN.verl_reward_manager = _is_verl_manager(str(source), str(name)) if name is not None else None
    length = get(get(config, "data"), "max_response_length")
    RUN.max_response_length = int(length) if isinstance(length, int) and not isinstance(length, bool) else None
    return RUN


def _needs_tracker(trainer: Any) -> bool:
    """Whether the configured estimator declares ``needs_difficulty_tracker`` (diva_grpo does), read from
    verl's registry: what the estimator declares switches the tracker on, never its name."""
    algorithm = trainer.config.get("algorithm", {}) if hasattr(trainer.config, "get") else {}
    name = algorithm.get("adv_estimator", None)
    if name is None:
        return False
    from verl.trainer.ppo.core_algos import ADV_ESTIMATOR_REGISTRY

    fn = ADV_ESTIMATOR_REGISTRY.get(getattr(name, "value", None) or str(name))
    return bool(getattr(fn, "needs_difficulty_tracker", False))


def _live_path(trainer: Any) -> str:
    from verl_difficulty.settings import DivaConfig

    configured = DivaConfig.from_algorithm(trainer.config.algorithm).tracker_path
    if configured:
        return configured
    return os.path.join(os.path.abspath(trainer.config.trainer.default_local_dir), CHECKPOINT_FILE)


def _resumed_folder(trainer: Any) -> str | None:
    """The global_step_N folder verl just resumed from (same rules as its _load_checkpoint), or None."""
    if getattr(trainer, "global_steps", 0) <= 0:
        return None
    cfg = trainer.config.trainer
    if cfg.resume_mode == "resume_path":
        folder = cfg.resume_from_path
    else:
        folder = os.path.join(cfg.default_local_dir, f"global_step_{trainer.global_steps}")
    return os.path.abspath(folder)


def _step_of(folder: str) -> int:
    return int(folder.rstrip(os.sep).rsplit("global_step_", 1)[-1])


def _earlier_snapshot(folder: str) -> str | None:
    """The snapshot of the newest checkpoint before ``folder`` (a sibling global_step_M, M < N) that has one."""
    root, step = os.path.dirname(folder.rstrip(os.sep)), _step_of(folder)
    found = []
    for name in os.listdir(root) if os.path.isdir(root) else ():
        match = re.fullmatch(r"global_step_(\d+)", name)
        if match and int(match.group(1)) < step and os.path.exists(os.path.join(root, name, CHECKPOINT_FILE)):
            found.append((int(match.group(1)), os.path.join(root, name, CHECKPOINT_FILE)))
    return max(found)[1] if found else None


def _live_step(live: str) -> int | None:
    try:
        return read_snapshot(live).step if os.path.exists(live) else None
    except ValueError as error:
        logger.warning("verl-difficulty: ignoring the unreadable DIVA tracker file %s: %s", live, error)
        return None


def _restore_source(folder: str | None, live: str) -> str | None:
    """The snapshot a resume from ``folder`` restores: the checkpoint's own; if it has none, the live file
    when it holds exactly that step's state, else the newest earlier checkpoint's; None: start fresh. A live
    file that is about to be replaced by another state is kept as ``<live>.bak``."""
    if folder is None:
        return None
    saved = os.path.join(folder, CHECKPOINT_FILE)
    if os.path.exists(saved):
        return saved
    step = _step_of(folder)
    if _live_step(live) == step:
        logger.warning("verl-difficulty: %s has no DIVA tracker snapshot; the live file %s holds the tracker "
                       "after step %d, exactly that checkpoint's state: restored from it", folder, live, step)
        return live
    earlier = _earlier_snapshot(folder)
    if os.path.exists(live):
        shutil.copy2(live, live + ".bak")
    if earlier is not None:
        logger.warning("verl-difficulty: %s has no DIVA tracker snapshot (saved without verl-difficulty, or "
                       "interrupted before it was written); restoring the tracker from the previous complete "
                       "checkpoint %s instead (its difficulties are older than the model). The replaced live file "
                       "is kept as %s.bak", folder, earlier, live)
    else:
        logger.warning("verl-difficulty: %s has no DIVA tracker snapshot and no earlier checkpoint has one; "
                       "difficulties restart at 5 (was it saved without verl-difficulty installed?)", folder)
    return earlier


def wrap_load_checkpoint(method: Callable) -> Callable:
    @functools.wraps(method)
    def _load_checkpoint(self, *args, **kwargs):
        result = method(self, *args, **kwargs)
        if _needs_tracker(self):
            record_run_context(self.config)
            folder = _resumed_folder(self)
            live = _live_path(self)
            TRACKER.use_file(live, restore_from=_restore_source(folder, live),
                             step=_step_of(folder) if folder else None)
            dataset = getattr(self, "train_dataset", None)
            if dataset is not None and hasattr(dataset, "tracker_path"):
                dataset.tracker_path = TRACKER.path
            logger.info("verl-difficulty: DIVA tracker at %s (%d problems, step %d)", TRACKER.path,
                        len(TRACKER.difficulty), TRACKER.step)
        return result

    return _load_checkpoint


def wrap_save_checkpoint(method: Callable) -> Callable:
    @functools.wraps(method)
    def _save_checkpoint(self, *args, **kwargs):
        if _needs_tracker(self):
            # before verl's body, whose last act (latest_checkpointed_iteration.txt) marks the checkpoint complete
            folder = os.path.join(self.config.trainer.default_local_dir, f"global_step_{self.global_steps}")
            TRACKER.save_to_checkpoint(folder)
        return method(self, *args, **kwargs)

    return _save_checkpoint


def patch_trainer_checkpoints(trainer_cls: type) -> None:
    """Wrap the checkpoint methods ``trainer_cls`` defines itself (rows of the extensions table)."""
    from verl_difficulty.verl_glue.patches import skip, wrap

    for name, make in (("_load_checkpoint", wrap_load_checkpoint), ("_save_checkpoint", wrap_save_checkpoint)):
        if name in trainer_cls.__dict__:
            wrap(trainer_cls, name, make)
        else:
            skip(f"{trainer_cls.__module__}:{trainer_cls.__qualname__}.{name}", "not defined by the class itself")


def patch_legacy_checkpoints(module) -> None:
    """``verl.trainer.ppo.ray_trainer``: RayPPOTrainer's checkpoint methods."""
    patch_trainer_checkpoints(module.RayPPOTrainer)


def patch_v1_checkpoints(module) -> None:
    """``verl.trainer.ppo.v1.trainer_base``: PPOTrainer's checkpoint methods."""
    patch_trainer_checkpoints(module.PPOTrainer)
