"""Response-length shaping (OpenVLThinkerV2, paper Eq. 9): a per-task trapezoid over |y| in TOKENS.

    R_len(|y|) = 0                                   if |y| < L_min or |y| > L_max
                 (|y| - L_min) / (L_low - L_min)     if L_min <= |y| < L_low
                 1                                   if L_low <= |y| <= L_high
                 (L_max - |y|) / (L_max - L_high)    if L_high < |y| <= L_max

with L_min < L_low <= L_high < L_max. The paper never published the thresholds: the defaults below
(``DEFAULT_LENGTH_FRACTIONS``, fractions of the run's ``max_response_length``) are this project's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "LengthThresholds",
    "DEFAULT_LENGTH_FRACTIONS",
    "length_reward",
    "length_reward_batch",
    "thresholds_for_task",
]


@dataclass(frozen=True)
class LengthThresholds:
    """Trapezoid corners in tokens. Validated on construction."""

    l_min: float
    l_low: float
    l_high: float
    l_max: float

    def __post_init__(self):
        vals = (self.l_min, self.l_low, self.l_high, self.l_max)
        for name, v in zip(("l_min", "l_low", "l_high", "l_max"), vals):
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
                raise TypeError(f"length threshold {name} must be a number, got {type(v).__name__}")
            if not math.isfinite(v):
                raise ValueError(f"length threshold {name} must be finite, got {v}")
        if self.l_min < 0:
            raise ValueError(f"length thresholds: l_min must be >= 0, got {self.l_min}")
        if not (self.l_min < self.l_low <= self.l_high < self.l_max):
            raise ValueError(
                "length thresholds must satisfy l_min < l_low <= l_high < l_max, got "
                f"l_min={self.l_min}, l_low={self.l_low}, l_high={self.l_high}, l_max={self.l_max}"
            )

    @classmethod
    def from_fractions(cls, fractions, max_response_length: int) -> LengthThresholds:
        """Corners as fractions of ``max_response_length`` (rounded to whole tokens, kept strictly ordered)."""
        if isinstance(max_response_length, bool) or not isinstance(max_response_length, (int, np.integer)):
            raise TypeError(f"max_response_length must be an int, got {type(max_response_length).__name__}")
        if max_response_length < 4:
            raise ValueError(f"max_response_length must be >= 4 tokens, got {max_response_length}")
        fr = tuple(fractions)
        if len(fr) != 4:
            raise ValueError(f"length fractions need 4 values (min, low, high, max), got {fr!r}")
        for f in fr:
            if isinstance(f, bool) or not isinstance(f, (int, float)) or not (0.0 <= f <= 1.0):
                raise ValueError(f"length fractions must be numbers in [0, 1], got {fr!r}")
        if not (fr[0] < fr[1] <= fr[2] < fr[3]):
            raise ValueError(f"length fractions must satisfy min < low <= high < max, got {fr!r}")
        l_min = round(fr[0] * max_response_length)
        l_low = max(round(fr[1] * max_response_length), l_min + 1)
        l_high = max(round(fr[2] * max_response_length), l_low) if fr[2] > fr[1] else l_low
        l_max = max(round(fr[3] * max_response_length), l_high + 1)
        return cls(l_min, l_low, l_high, l_max)

    @classmethod
    def coerce(cls, value: Any, max_response_length: int | None = None) -> LengthThresholds:
        """Accept a LengthThresholds, a mapping {l_min, l_low, l_high, l_max} in tokens, a 4-sequence in
        tokens, or a mapping {"fractions": [...]} (needs max_response_length)."""
        if isinstance(value, LengthThresholds):
            return value
        if isinstance(value, Mapping):
            if "fractions" in value:
                if max_response_length is None:
                    raise ValueError("fractional length thresholds need max_response_length")
                return cls.from_fractions(value["fractions"], max_response_length)
            missing = {"l_min", "l_low", "l_high", "l_max"} - set(value)
            if missing:
                raise ValueError(f"length thresholds mapping is missing {sorted(missing)}")
            return cls(value["l_min"], value["l_low"], value["l_high"], value["l_max"])
        if isinstance(value, (list, tuple)) and len(value) == 4:
            return cls(*value)
        raise TypeError(f"cannot read length thresholds from {value!r}")


# Project defaults (ours, not the paper's): (L_min, L_low, L_high, L_max) as fractions of max_response_length.
_PERCEPTION = (0.0, 0.02, 0.15, 0.40)  # OCR, grounding, counting: short direct answers
_MIDDLE = (0.0, 0.05, 0.40, 0.80)  # chart/figure QA, spatial reasoning, general VQA, numerical answers
_REASONING = (0.0, 0.10, 0.70, 0.98)  # math, science: long chains; a response cut at the limit scores ~0
DEFAULT_LENGTH_FRACTIONS: dict[str, tuple[float, float, float, float]] = {
    # answer types
    "ocr": _PERCEPTION,
    "grounding": _PERCEPTION,
    "counting": _PERCEPTION,
    "multiple_choice": _MIDDLE,
    "numerical": _MIDDLE,
    "regression": _MIDDLE,
    "math": _REASONING,
    # OpenVLThinkerV2 domains
    "spatial_grounding": _PERCEPTION,
    "spatial_reasoning": _MIDDLE,
    "general_vqa": _MIDDLE,
    "chart": _MIDDLE,
    "science_vqa": _REASONING,
    # the OpenVLThinkerV2 authors' task_type labels (spatial_grounding, spatial_reasoning, ocr are above)
    "general_vqa_science_stem": _MIDDLE,  # mostly multiple-choice VQA: the general_vqa trapezoid
    "chart_figure_qa": _MIDDLE,
    "math_reasoning": _REASONING,
}
_FALLBACK_FRACTIONS = _MIDDLE


def thresholds_for_task(
    task: str | None,
    max_response_length: int,
    overrides: Mapping[str, Any] | None = None,
) -> LengthThresholds:
    """Thresholds of ``task``: ``overrides[task]`` (tokens, or {"fractions": [...]}) else the project default
    fractions scaled to ``max_response_length``; unknown tasks get the middle trapezoid."""
    if overrides and task in overrides:
        return LengthThresholds.coerce(overrides[task], max_response_length)
    fr = DEFAULT_LENGTH_FRACTIONS.get(task, _FALLBACK_FRACTIONS) if isinstance(task, str) else _FALLBACK_FRACTIONS
    return LengthThresholds.from_fractions(fr, max_response_length)


def length_reward(length: float, th: LengthThresholds) -> float:
    """Scalar R_len, written piecewise as in Eq. 9."""
    x = float(length)
    if not math.isfinite(x) or x < th.l_min or x > th.l_max:
        return 0.0
    if x < th.l_low:
        return (x - th.l_min) / (th.l_low - th.l_min)
    if x <= th.l_high:
        return 1.0
    return (th.l_max - x) / (th.l_max - th.l_high)


def length_reward_batch(lengths, l_min, l_low=None, l_high=None, l_max=None):
    """Vectorised R_len over a numpy array or torch tensor of lengths.

    Either pass one ``LengthThresholds`` as ``l_min`` or four corners, each a scalar or an array/tensor
    broadcastable to ``lengths`` (per-sample thresholds for mixed-task batches). Returns float64 numpy for
    numpy/list input and a float32 tensor on the same device for torch input.
    """
    if isinstance(l_min, LengthThresholds):
        th = l_min
        l_min, l_low, l_high, l_max = th.l_min, th.l_low, th.l_high, th.l_max
    elif l_low is None or l_high is None or l_max is None:
        raise TypeError("length_reward_batch needs a LengthThresholds or all four corners")
    try:
        import torch
    except ImportError:  # pragma: no cover
        torch = None
    if torch is not None and isinstance(lengths, torch.Tensor):
        x = lengths.to(torch.float64)

        def t(v):
            return torch.as_tensor(v, dtype=torch.float64, device=x.device)

        lo, lw, hi, mx = t(l_min), t(l_low), t(l_high), t(l_max)
        rise = (x - lo) / (lw - lo)
        fall = (mx - x) / (mx - hi)
        r = torch.clamp(torch.minimum(rise, fall), 0.0, 1.0)
        r = torch.where(torch.isfinite(x), r, torch.zeros_like(r))
        return r.to(torch.float32)
    x = np.asarray(lengths, dtype=np.float64)
    lo, lw, hi, mx = (np.asarray(v, dtype=np.float64) for v in (l_min, l_low, l_high, l_max))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.clip(np.minimum((x - lo) / (lw - lo), (mx - x) / (mx - hi)), 0.0, 1.0)
    return np.where(np.isfinite(x), r, 0.0)
