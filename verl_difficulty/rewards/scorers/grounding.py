"""Grounding scorer: boxes read from JSON, matched one-to-one by IoU (scipy's linear_sum_assignment)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..answers import Reject, run_scorer, text_ground_truth
from ..numbers import is_number
from ..result import ScoreResult

__all__ = ["DEFAULT_STRUCTURE_BONUS", "MAX_BOXES", "box_iou", "max_weight_matching", "score_grounding"]

DEFAULT_STRUCTURE_BONUS = 0.25
MAX_BOXES = 64

_BOX_KEYS = ("bbox_2d", "bbox", "box", "box_2d", "boxes")  # "boxes": OpenVLThinkerV2's prompt and data
_FENCE_RE = re.compile(r"^```(?:json|JSON)?\s*(.*?)\s*```$", re.DOTALL)


def _boxes_from_obj(obj: Any, depth: int = 0) -> list[list[float]]:
    """Normalise [x1,y1,x2,y2] / [[...], ...] / {"bbox_2d": [...]} / [{"bbox_2d": ...}, ...] to a list of boxes.
    Raises Reject on anything else."""
    if depth > 3:
        raise Reject("box structure too deep")
    if isinstance(obj, np.ndarray):
        obj = obj.tolist()
    if isinstance(obj, Mapping):
        for k in _BOX_KEYS:
            if k in obj:
                return _boxes_from_obj(obj[k], depth + 1)
        raise Reject("no bbox key in answer object")
    if isinstance(obj, (list, tuple)):
        if len(obj) == 4 and all(is_number(v) for v in obj):
            return [[float(v) for v in obj]]
        if not obj:
            raise Reject("empty box list")
        if len(obj) > MAX_BOXES:
            raise Reject(f"more than {MAX_BOXES} boxes")
        out: list[list[float]] = []
        for item in obj:
            if isinstance(item, np.ndarray):
                item = item.tolist()
            if isinstance(item, (list, tuple)) and len(item) == 4 and all(is_number(v) for v in item):
                out.append([float(v) for v in item])
            elif isinstance(item, Mapping):
                out.extend(_boxes_from_obj(item, depth + 1))
            else:
                raise Reject("malformed box (need 4 numbers)")
        return out
    raise Reject("answer is not a box or list of boxes")


def _parse_box_text(text: str) -> list[list[float]]:
    s = text.strip()
    m = _FENCE_RE.match(s)
    if m:
        s = m.group(1)
    try:
        obj = json.loads(s)
    except (ValueError, RecursionError):
        raise Reject("malformed JSON answer") from None
    return _boxes_from_obj(obj)


def _box_problem(b: Sequence[float], limits: tuple[float, float] | None) -> str | None:
    x1, y1, x2, y2 = b
    if not all(math.isfinite(v) for v in b):
        return "non-finite coordinate"
    if min(b) < 0:
        return "negative coordinate"
    if limits is not None and (x2 > limits[0] or y2 > limits[1] or x1 > limits[0] or y1 > limits[1]):
        return "box out of range"
    if x2 <= x1 or y2 <= y1:
        return "degenerate box"
    return None


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def max_weight_matching(weights: np.ndarray) -> float:
    """Largest total weight of a one-to-one matching of rows to columns (each used at most once), by
    scipy.optimize.linear_sum_assignment."""
    w = np.asarray(weights, dtype=np.float64)
    if w.size == 0:
        return 0.0
    rows, cols = linear_sum_assignment(w, maximize=True)
    return float(w[rows, cols].sum())


def _limits(options) -> tuple[float, float] | None:
    size = options.get("image_size")  # (width, height)
    if size is not None:
        try:
            w, h = float(size[0]), float(size[1])
            if w > 0 and h > 0:
                return (w, h)
        except (TypeError, ValueError, IndexError, KeyError):
            pass
    cmax = options.get("coord_max")
    if cmax is not None:
        return (float(cmax), float(cmax))
    return None


def _grounding_body(answer, gt, fmt, options):
    try:
        if isinstance(gt, (str, bytes)):
            gt_boxes = _parse_box_text(text_ground_truth(gt))
        else:
            gt_boxes = _boxes_from_obj(gt)
    except Reject as e:
        raise Reject(f"ground truth: {e}") from None
    limits = _limits(options)
    for b in gt_boxes:
        prob = _box_problem(b, None)
        if prob:
            raise Reject(f"ground truth: {prob}")
    bonus = float(options.get("structure_bonus", DEFAULT_STRUCTURE_BONUS))
    pred_boxes = _parse_box_text(answer)  # raises "malformed JSON" -> structure 0
    problems = [_box_problem(b, limits) for b in pred_boxes]
    valid = [b for b, p in zip(pred_boxes, problems) if p is None]
    bad = [p for p in problems if p]
    denom = max(len(pred_boxes), len(gt_boxes))
    if bad:  # the structure bonus rewards a well-formed answer: one invalid box forfeits it
        bonus = 0.0
    if not valid:
        return 0.0, bad[0], bonus
    iou = np.array([[box_iou(p, g) for g in gt_boxes] for p in valid], dtype=np.float64)
    total = float(iou[0, 0]) if iou.shape == (1, 1) else max_weight_matching(iou)
    acc = total / denom
    reason = f"mean iou over {denom} box(es)" + (f"; {len(bad)} invalid: {bad[0]}" if bad else "")
    return acc, reason, bonus


def score_grounding(response, ground_truth, **options) -> ScoreResult:
    """IoU of [x1, y1, x2, y2] boxes; several boxes are matched one-to-one (Hungarian, max total IoU) and the
    matched IoU is summed and divided by max(#pred, #gt). Invalid predicted boxes (negative, non-finite,
    degenerate, outside ``image_size`` (w, h) or ``coord_max``) count as unmatched (IoU 0). structure =
    ``structure_bonus`` (0.25) when the answer is valid box JSON, every box in it is valid and the format holds,
    else 0. Box keys read: bbox_2d, bbox, box, box_2d, boxes."""
    return run_scorer("grounding", response, ground_truth, options, _grounding_body)
