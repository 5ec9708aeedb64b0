"""The result of scoring one response (``ScoreResult``) and the overall reward made from it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["EXTRA_INFO_KEYS", "ScoreResult", "overall_score"]

# Keys of ScoreResult.to_extra_info(), identical for every scorer. compute_score adds "score" in front.
EXTRA_INFO_KEYS = ("acc", "format", "structure", "length_score", "task", "answer_type", "reason", "timeout")


@dataclass
class ScoreResult:
    acc: float = 0.0
    format: int = 0
    structure: float = 0.0
    reason: str = ""
    answer_type: str = ""
    task: str = ""
    length_score: float = 0.0
    timeout: int = 0  # 1 when the call hit its wall-clock bound (math); its mean is the batch's timeout rate

    def to_extra_info(self) -> dict[str, Any]:
        """The same keys (``EXTRA_INFO_KEYS``) for every scorer: verl collates extra info by the first sample's."""
        return {
            "acc": float(self.acc),
            "format": int(self.format),
            "structure": float(self.structure),
            "length_score": float(self.length_score),
            "task": str(self.task or self.answer_type),
            "answer_type": str(self.answer_type),
            "reason": str(self.reason),
            "timeout": int(self.timeout),
        }


def overall_score(result: ScoreResult, *, length_shaping: bool = False, w_fmt: float = 0.1,
                  w_len: float = 0.1) -> float:
    """(1 - w_fmt - w_len)·acc + w_fmt·format + w_len·R_len + structure; w_len counts only with length
    shaping on (the 0.1 is inferred from the authors' commented-out code)."""
    wl = w_len if length_shaping else 0.0
    return (1.0 - w_fmt - wl) * result.acc + w_fmt * result.format + wl * result.length_score + result.structure
