"""Math scorer: normalised exact match, then plain numbers, then math_verify in a bounded worker process
(math_guard.py)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from ..answers import Reject, run_scorer, text_ground_truth
from ..result import ScoreResult

__all__ = ["MATH_MAX_ANSWER_CHARS", "math_body", "math_timeout", "run_math_scorer", "score_math"]

MATH_MAX_ANSWER_CHARS = 1000
_TEX_NOISE_RE = re.compile(r"\\(?:left|right|,|;|!|\s)|\$|\s+")


def _norm_math_str(s: str) -> str:
    s = s.strip()
    if s.startswith("\\boxed{") and s.endswith("}"):
        s = s[len("\\boxed{") : -1]
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    return _TEX_NOISE_RE.sub("", s).rstrip(".")


def math_timeout(options: Mapping[str, Any]) -> float:
    """The wall-clock bound ``math_timeout_s`` in seconds; raises ValueError on a bad value (a setting)."""
    from ..math_guard import DEFAULT_TIMEOUT_S

    v = options.get("math_timeout_s")
    if v is None:
        return DEFAULT_TIMEOUT_S
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 < v <= 600):
        raise ValueError(f"math_timeout_s={v!r}: must be a number of seconds in (0, 600] (default "
                         f"{DEFAULT_TIMEOUT_S})")
    return float(v)


def math_body(answer, gt, fmt, options):
    """(acc, reason) of a math answer against its ground truth, cheapest check first."""
    from ..math_guard import compare_plain_numbers, math_verify_available, verify_bounded

    gt_text = text_ground_truth(gt)
    if len(gt_text) > MATH_MAX_ANSWER_CHARS:
        raise Reject("ground truth too long")
    pred_norm, gold_norm = _norm_math_str(answer), _norm_math_str(gt_text)
    if pred_norm == gold_norm:
        return 1.0, "exact match"
    # two plain numbers: math_verify's verdict without a trip to a worker process
    same = compare_plain_numbers(gold_norm, pred_norm)
    if same is not None:
        return (1.0, "numeric match") if same else (0.0, "numeric mismatch")
    if not math_verify_available():
        return 0.0, "mismatch (math_verify not installed: exact match only)"
    # size screen, then math_verify in a worker process killed at the deadline (works off the main thread,
    # where math_verify's signal-based timeouts cannot run, and never holds this process's GIL while waiting)
    verdict = verify_bounded(gt_text, answer, math_timeout(options))
    return verdict.acc, verdict.reason


def run_math_scorer(response, ground_truth, options: Mapping[str, Any], body: Callable) -> ScoreResult:
    """The math frame shared with the presets: a bad ``math_timeout_s`` raises (a configuration error, not a
    score of 0), answers are capped at MATH_MAX_ANSWER_CHARS and ``timeout`` flags a call that hit the bound."""
    from ..math_guard import TIMEOUT_REASON

    math_timeout(options)
    res = run_scorer("math", response, ground_truth, options, body, answer_limit=MATH_MAX_ANSWER_CHARS)
    res.timeout = int(res.reason.startswith(TIMEOUT_REASON))
    return res


def score_math(response, ground_truth, **options) -> ScoreResult:
    """Normalised exact string match, then plain numbers compared directly, then math_verify (parse +
    verify) in a worker process with a hard wall-clock bound ``math_timeout_s`` (default 3 s; reason
    "timeout", ``timeout`` 1). Expressions too large for sympy (huge powers, factorials, towers) score 0
    without parsing. A bad ``math_timeout_s`` raises ValueError (a configuration error, like a bad template)."""
    return run_math_scorer(response, ground_truth, options, math_body)
