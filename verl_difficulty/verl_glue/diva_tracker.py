"""DIVA's difficulty tracker on verl's driver: updated every step, saved with verl's checkpoints.

Flow across verl's processes (README, "DIVA-GRPO: how the tracker reaches the dataset"):

1. The driver (verl's TaskRunner, where advantages are computed) owns one :class:`DifficultyTracker`.
   The ``diva_grpo`` estimator updates it every step from the batch and writes its snapshot file
   atomically (``verl_difficulty.data.difficulty_store``).
2. The dataset (``DivaDataset``, in the dataloader's worker processes) re-reads that file when it
   changes and picks each problem's variants from the tracked difficulty.
3. ``_save_checkpoint`` (both trainers) also writes the snapshot into
   ``global_step_N/verl_difficulty/diva_tracker.json``; ``_load_checkpoint`` restores it from the folder
   it resumes from, so a resumed run continues from exactly the saved state (the live file may be ahead
   of the checkpoint after a crash: the checkpoint wins).

The snapshot path is ``algorithm.diva.tracker_path`` or ``<trainer.default_local_dir>/verl_difficulty/
diva_tracker.json``; the driver exports it as ``VERL_DIFFICULTY_DIVA_TRACKER`` and hands it to a dataset
that has a ``tracker_path`` attribute, before the dataloader starts its workers.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
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

logger = logging.getLogger(__name__)

__all__ = ["DifficultyTracker", "TRACKER", "ENV_TRACKER_PATH", "CHECKPOINT_FILE", "patch_trainer_checkpoints"]

ENV_TRACKER_PATH = "VERL_DIFFICULTY_DIVA_TRACKER"
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

    def use_file(self, path: str | None, restore_from: str | None = None) -> None:
        """Make ``path`` the live snapshot, holding the state restored from ``restore_from`` (a checkpoint's
        snapshot) or, without one, a fresh tracker: like verl's model, a run that resumes from no checkpoint
        starts from scratch, whatever a previous run left in the live file."""
        self.path = path
        if restore_from and os.path.exists(restore_from):
            self.load(read_snapshot(restore_from))
        else:
            self.load(DifficultySnapshot())
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


def _uses_diva(trainer: Any) -> bool:
    algorithm = trainer.config.get("algorithm", {}) if hasattr(trainer.config, "get") else {}
    return str(algorithm.get("adv_estimator", "")) == "diva_grpo"


def _live_path(trainer: Any) -> str:
    from verl_difficulty.verl_glue.config import DivaConfig

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


def wrap_load_checkpoint(method: Callable) -> Callable:
    @functools.wraps(method)
    def _load_checkpoint(self, *args, **kwargs):
        result = method(self, *args, **kwargs)
        if _uses_diva(self):
            folder = _resumed_folder(self)
            saved = os.path.join(folder, CHECKPOINT_FILE) if folder else None
            if folder and not os.path.exists(saved):
                logger.warning("verl-difficulty: %s has no DIVA tracker snapshot; difficulties restart at 5 "
                               "(was it saved without verl-difficulty installed?)", folder)
            TRACKER.use_file(_live_path(self), restore_from=saved)
            dataset = getattr(self, "train_dataset", None)
            if dataset is not None and hasattr(dataset, "tracker_path"):
                dataset.tracker_path = TRACKER.path
            logger.info("verl-difficulty: DIVA tracker at %s (%d problems, step %d)", TRACKER.path,
                        len(TRACKER.difficulty), TRACKER.step)
        return result

    _load_checkpoint.__verl_difficulty_wrapped__ = method
    return _load_checkpoint


def wrap_save_checkpoint(method: Callable) -> Callable:
    @functools.wraps(method)
    def _save_checkpoint(self, *args, **kwargs):
        result = method(self, *args, **kwargs)
        if _uses_diva(self):
            folder = os.path.join(self.config.trainer.default_local_dir, f"global_step_{self.global_steps}")
            TRACKER.save_to_checkpoint(folder)
        return result

    _save_checkpoint.__verl_difficulty_wrapped__ = method
    return _save_checkpoint


def patch_trainer_checkpoints(trainer_cls: type) -> None:
    for name, wrap in (("_load_checkpoint", wrap_load_checkpoint), ("_save_checkpoint", wrap_save_checkpoint)):
        method = trainer_cls.__dict__.get(name)
        if method is not None and getattr(method, "__verl_difficulty_wrapped__", None) is None:
            setattr(trainer_cls, name, wrap(method))
