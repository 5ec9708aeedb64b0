"""The ``openvlthinker_v2`` reward preset: the OpenVLThinkerV2 authors' released multi-task reward
(``EasyR1/verl/reward_function/multitask_reward.py``, ``compute_score``, format weight 0.1, length weight 0)
for the answer types of their published training data, with four of their bugs fixed (docs/rewards.md,
"The openvlthinker_v2 preset").

Per response (the ground truth is the content of its first ``<answer>…</answer>`` block when it has one)::

    overall = 0.9 * acc + 0.1 * format + structure
    format    = 1 when the response is <thinking>…</thinking><answer>…</answer> (template ``openvlthinker_v2``)
    structure = 0.5 when the format holds; for spatial grounding only when the answer is {"boxes": [4 numbers]}

    multiple choice  acc 1 when the answers are equal after lower-casing and dropping spaces, ``$``, braces,
                     ``\\boxed``/``\\text`` wrappers, ``\\( \\)`` and one pair of enclosing brackets ("(C)" = "c")
    numerical        float(answer without commas) and the ground truth equal after rounding to 2 decimals
    regression       mean relative accuracy over thresholds 0.50, 0.55, ..., 0.95, in float32 as the authors
    OCR              1 - word error rate over whitespace-split words (case and punctuation count), clipped
    math             math-verify equivalence (the project's math scorer)
    spatial grounding IoU of {"boxes": [x1, y1, x2, y2]} against the ground truth's box

Everything here is a pure function of the response and the ground truth; it never raises on model output.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from .answers import MAX_ANSWER_CHARS, Reject, run_scorer, text_ground_truth
from .result import ScoreResult
from .scorers.math_expr import math_body, run_math_scorer
from .scorers.ocr import OCR_MAX_WORDS, word_error_rate

__all__ = ["PRESET_NAME", "PRESET_DEFAULTS", "PRESET_REFUSED_OPTIONS", "PRESET_SCORERS", "STRUCTURE",
           "mean_relative_accuracy", "unwrap_answer"]

PRESET_NAME = "openvlthinker_v2"
# reward_kwargs the preset sets unless given explicitly (the authors' format_weight, their prompt's layout)
PRESET_DEFAULTS = {"template": "openvlthinker_v2", "w_fmt": 0.1}
# scorer options of the project's own scorers that the authors' rules have no place for: refused, not ignored
PRESET_REFUSED_OPTIONS = frozenset({"abs_tol", "rel_tol", "zero_tol", "decimals", "choices", "coord_max",
                                    "image_size", "structure_bonus"})
STRUCTURE = 0.5
# thresholds 0.50, 0.55, ..., 0.95 computed in float64 then rounded to float32, as torch.arange(0.5, 0.975, 0.05,
# dtype=float32) makes them (a float32 np.arange accumulates differently); 1 - t in float32, as the authors
_MRA_KEEP = np.float32(1.0) - (0.5 + 0.05 * np.arange(10)).astype(np.float32)


def unwrap_answer(ground_truth: Any) -> str:
    """The ground truth's text: the stripped content of its first ``<answer>…</answer>`` block, or the whole
    text when it has none (or an empty one). Raises the scorers' reject on empty or non-text ground truth."""
    text = text_ground_truth(ground_truth)
    start = text.find("<answer>")
    end = text.find("</answer>", start + 8) if start != -1 else -1
    inner = text[start + 8 : end].strip() if end != -1 else ""
    return inner or text


# --- multiple choice ---------------------------------------------------------------------------------------

_WRAPPER_RE = re.compile(r"\\(?:boxed|text|textbf|mathrm)\b|\\[()\[\]]|[\s${}]")
_BRACKETS = "()[]"


def _choice_key(s: str) -> str:
    s = _WRAPPER_RE.sub("", s).lower()
    if len(s) > 2 and s[0] in "([" and s[-1] in ")]" and not any(c in _BRACKETS for c in s[1:-1]):
        s = s[1:-1]
    return s


def _float_or_none(s: str) -> float | None:
    try:
        v = float(s.replace(",", ""))
    except (ValueError, OverflowError):
        return None
    return v if math.isfinite(v) else None


def _mc_body(answer, gt, fmt, options):
    g = unwrap_answer(gt)
    a, b = _choice_key(answer), _choice_key(g)
    if a == b and a:
        return 1.0, "match", STRUCTURE
    fa, fb = _float_or_none(a), _float_or_none(b)
    if fa is not None and fb is not None and fa == fb:
        return 1.0, "numeric match", STRUCTURE
    return 0.0, "mismatch", STRUCTURE


# --- numbers -----------------------------------------------------------------------------------------------


def _numbers(answer: str, gt: Any) -> tuple[float, float | None]:
    """(ground truth, answer or None) as float() reads them; a ground truth that is no number rejects."""
    g = _float_or_none(unwrap_answer(gt))
    if g is None:
        raise Reject("ground truth is not a number")
    return g, _float_or_none(answer)


def _numerical_body(answer, gt, fmt, options):
    g, p = _numbers(answer, gt)
    if p is None:
        return 0.0, "answer is not a number", STRUCTURE
    ok = round(g, 2) == round(p, 2)
    return (1.0, "2-decimal match", STRUCTURE) if ok else (0.0, "2-decimal mismatch", STRUCTURE)


def mean_relative_accuracy(pred: float, target: float) -> float:
    """Share of the thresholds t in 0.50, 0.55, ..., 0.95 with |pred - target| / (|target| + 1e-8) < 1 - t,
    computed in float32 (the authors' arithmetic: ties at a threshold resolve as theirs do)."""
    with np.errstate(over="ignore", invalid="ignore"):
        p, g = np.float32(pred), np.float32(target)
        rel = np.abs(p - g) / (np.abs(g) + np.float32(1e-8))
        hits = int(np.count_nonzero(rel < _MRA_KEEP))
    return float(np.float32(hits) / np.float32(_MRA_KEEP.size))


def _regression_body(answer, gt, fmt, options):
    g, p = _numbers(answer, gt)
    if p is None:
        return 0.0, "answer is not a number", STRUCTURE
    return mean_relative_accuracy(p, g), "mean relative accuracy", STRUCTURE


# --- OCR ---------------------------------------------------------------------------------------------------


def _ocr_body(answer, gt, fmt, options):
    ref, hyp = unwrap_answer(gt).split(), answer.split()
    max_words = int(options.get("ocr_max_words", OCR_MAX_WORDS))
    if len(ref) > max_words:
        raise Reject(f"ground truth longer than {max_words} words")
    if ref and abs(len(hyp) - len(ref)) >= len(ref):  # edit distance >= length gap: WER >= 1, skip the DP
        return 0.0, "wer >= 1 (length gap)", STRUCTURE
    wer = word_error_rate(ref, hyp)
    return max(0.0, 1.0 - wer), f"wer={wer:.3f}", STRUCTURE


# --- math --------------------------------------------------------------------------------------------------


def _math_body(answer, gt, fmt, options):
    out = math_body(answer, unwrap_answer(gt), fmt, options)
    return out[0], out[1], STRUCTURE


# --- spatial grounding -------------------------------------------------------------------------------------


def _box(text: str) -> list[float] | None:
    """[x1, y1, x2, y2] of ``{"boxes": [4 numbers]}`` (numbers as float() reads them), else None."""
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        return None
    box = obj.get("boxes") if isinstance(obj, dict) else None
    if not isinstance(box, list) or len(box) != 4:
        return None
    try:
        vals = [float(v) for v in box]
    except (TypeError, ValueError, OverflowError):
        return None
    return vals if all(math.isfinite(v) for v in vals) else None


def _iou(a: list[float], b: list[float]) -> float:
    """IoU with areas clipped at 0 (an inverted box has area 0), 0 when the union is ~0."""
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    area_a = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1])
    area_b = max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])
    union = area_a + area_b - inter
    return inter / union if union > 1e-12 else 0.0


def _grounding_body(answer, gt, fmt, options):
    g = _box(unwrap_answer(gt))
    if g is None:
        raise Reject('ground truth is not {"boxes": [x1, y1, x2, y2]}')
    p = _box(answer)
    if p is None:
        return 0.0, 'answer is not {"boxes": [x1, y1, x2, y2]}', 0.0
    return _iou(p, g), "iou", STRUCTURE


def _scorer(answer_type: str, body: Callable, answer_limit: int = MAX_ANSWER_CHARS) -> Callable[..., ScoreResult]:
    def score(response, ground_truth, **options) -> ScoreResult:
        return run_scorer(answer_type, response, ground_truth, options, body, answer_limit)

    score.__name__ = f"score_{answer_type}_{PRESET_NAME}"
    return score


def _score_math(response, ground_truth, **options) -> ScoreResult:
    """The project's bounded math check (same wall-clock bound and timeout flag) with the preset's structure."""
    return run_math_scorer(response, ground_truth, options, _math_body)


# answer type -> scorer; counting has no rule of its own there: the authors score counts as "numerical"
PRESET_SCORERS: dict[str, Callable[..., ScoreResult]] = {
    "multiple_choice": _scorer("multiple_choice", _mc_body),
    "numerical": _scorer("numerical", _numerical_body),
    "counting": _scorer("counting", _numerical_body),
    "regression": _scorer("regression", _regression_body),
    "ocr": _scorer("ocr", _ocr_body),
    "math": _score_math,
    "grounding": _scorer("grounding", _grounding_body),
}
