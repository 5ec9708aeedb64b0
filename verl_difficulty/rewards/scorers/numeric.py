"""Scorers of number answers: numerical (rounded or tolerance match), regression (relative accuracy) and
counting (exact integer, digits or English number words)."""

from __future__ import annotations

import re

from ..answers import Reject, run_scorer
from ..numbers import NUMBER_RE, STRIP_CHARS, number_ground_truth, parse_number
from ..result import ScoreResult

__all__ = ["score_counting", "score_numerical", "score_regression"]


def _numerical_body(answer, gt, fmt, options):
    g = number_ground_truth(gt)
    p = parse_number(answer)
    rel_tol = options.get("rel_tol")
    if rel_tol is not None:
        rel_tol = float(rel_tol)
        abs_tol = float(options.get("abs_tol", 1e-9))
        ok = abs(p - g) <= max(rel_tol * abs(g), abs_tol)
        return (1.0, "match (rel_tol)") if ok else (0.0, "mismatch (rel_tol)")
    decimals = int(options.get("decimals", 2))
    ok = abs(round(p, decimals) - round(g, decimals)) < 0.5 * 10 ** (-decimals - 3)
    return (1.0, f"match ({decimals} decimals)") if ok else (0.0, f"mismatch ({decimals} decimals)")


def score_numerical(response, ground_truth, **options) -> ScoreResult:
    """acc 1 when the answer equals the ground truth after rounding both to ``decimals`` (2), or, when
    ``rel_tol`` is given, when |pred - gt| <= max(rel_tol*|gt|, abs_tol)."""
    return run_scorer("numerical", response, ground_truth, options, _numerical_body)


def _regression_body(answer, gt, fmt, options):
    g = number_ground_truth(gt)
    p = parse_number(answer)
    if g == 0.0:
        zero_tol = float(options.get("zero_tol", 1e-9))
        return (1.0, "exact zero") if abs(p) <= zero_tol else (0.0, "gt is 0, pred is not")
    acc = max(0.0, 1.0 - abs(p - g) / abs(g))
    return acc, "relative accuracy"


def score_regression(response, ground_truth, **options) -> ScoreResult:
    """acc = max(0, 1 - |pred - gt| / |gt|); gt == 0: acc 1 iff |pred| <= zero_tol (1e-9), else 0."""
    return run_scorer("regression", response, ground_truth, options, _regression_body)


_NUMBER_WORDS = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
        "sixteen seventeen eighteen nineteen twenty".split()
    )
}
_WORD_RE = re.compile(r"[a-z]+")


def _parse_count(text: str) -> int:
    s = text.strip().strip(STRIP_CHARS).strip().lower().rstrip(".")
    if s in _NUMBER_WORDS:
        return _NUMBER_WORDS[s]
    try:
        v = parse_number(s)
    except Reject as e:
        words = [w for w in _WORD_RE.findall(s) if w in _NUMBER_WORDS]
        if len(words) == 1 and not NUMBER_RE.search(s):
            return _NUMBER_WORDS[words[0]]
        raise e
    if v != int(v):
        raise Reject("count is not an integer")
    return int(v)


def _counting_body(answer, gt, fmt, options):
    g = number_ground_truth(gt)
    if g != int(g):
        raise Reject("ground truth is not an integer")
    if len(answer) > 200:
        raise Reject("count answer too long")
    p = _parse_count(answer)
    return (1.0, "match") if p == int(g) else (0.0, "mismatch")


def score_counting(response, ground_truth, **options) -> ScoreResult:
    """Exact integer match. Accepts digits ("3", "3.0", "1,024") and English number words zero..twenty."""
    return run_scorer("counting", response, ground_truth, options, _counting_body)
