"""The DIVA difficulty tracker's state on disk: how it travels from the trainer to the dataset.

The tracker is updated on verl's driver (the process that computes advantages), but variants are chosen
by the dataset, which runs in dataloader worker processes (``data.dataloader_num_workers``). The driver
therefore writes a snapshot file after every update, atomically (temp file + rename: a reader never
sees half a file, a crash never leaves one), and the dataset re-reads it when it changes (mtime check).
The same snapshot is copied into verl's checkpoint folder on save and restored from it on resume.

File format (JSON): {"version": 1, "step": int, "rule": str, "difficulty": {problem_id: float}}.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from verl_difficulty.core.diva import MAX_DIFFICULTY as MAX_TRACKED
from verl_difficulty.core.diva import MIN_DIFFICULTY as MIN_TRACKED
from verl_difficulty.files import atomic_write_text

__all__ = ["DifficultySnapshot", "write_snapshot", "read_snapshot", "SnapshotReader", "DEFAULT_DIFFICULTY"]

DEFAULT_DIFFICULTY = 5.0  # every problem starts in the middle of [1, 9]
VERSION = 1


@dataclass
class DifficultySnapshot:
    difficulty: dict[str, float] = field(default_factory=dict)
    step: int = 0
    rule: str = "paper"

    def get(self, problem_id: str) -> float:
        return self.difficulty.get(str(problem_id), DEFAULT_DIFFICULTY)


def write_snapshot(path: str, snapshot: DifficultySnapshot) -> None:
    """Atomically replace ``path`` with ``snapshot`` (fsync'd temp file in the same folder, then rename)."""
    payload = {"version": VERSION, "step": snapshot.step, "rule": snapshot.rule, "difficulty": snapshot.difficulty}
    atomic_write_text(path, json.dumps(payload, sort_keys=True))


def read_snapshot(path: str) -> DifficultySnapshot:
    """Read a snapshot; a missing file is an empty tracker (every problem at the default difficulty)."""
    if not os.path.exists(path):
        return DifficultySnapshot()
    with open(path) as handle:
        try:
            payload = json.load(handle)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not a verl-difficulty DIVA tracker snapshot (not JSON: {error})") from None
    if not isinstance(payload, dict) or payload.get("version") != VERSION \
            or not isinstance(payload.get("difficulty"), dict):
        raise ValueError(f"{path} is not a verl-difficulty DIVA tracker snapshot (version {VERSION})")
    difficulty = {str(k): v for k, v in payload["difficulty"].items()}
    # every tracked value comes out of a clamp to [1, 9]: anything else is a damaged or hand-edited file
    bad = [(k, v) for k, v in difficulty.items() if isinstance(v, bool) or not isinstance(v, (int, float))
           or not MIN_TRACKED <= v <= MAX_TRACKED]
    if bad:
        raise ValueError(f"{path}: problem {bad[0][0]!r} has difficulty {bad[0][1]!r} ({len(bad)} in all), outside "
                         f"the tracker's range [{MIN_TRACKED:g}, {MAX_TRACKED:g}]; fix or delete the file")
    return DifficultySnapshot(
        difficulty={k: float(v) for k, v in difficulty.items()},
        step=int(payload.get("step", 0)),
        rule=str(payload.get("rule", "paper")),
    )


class SnapshotReader:
    """Re-reads a snapshot file only when it changed (for dataset workers: one stat per item)."""

    def __init__(self, path: str | None):
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._snapshot = DifficultySnapshot()

    def current(self) -> DifficultySnapshot:
        if not self.path:
            return self._snapshot
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return self._snapshot
        # every write is a rename onto the path, so the inode changes even when mtime and size do not
        stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            self._snapshot = read_snapshot(self.path)
            self._stamp = stamp
        return self._snapshot
