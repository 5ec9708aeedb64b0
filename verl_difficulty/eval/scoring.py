"""Rule-based answer checks shared by the benchmarks (pure functions on the model's final answer text).

Libraries: rapidfuzz (Levenshtein distance for ANLS), math-verify through the package's bounded pool
(``verl_difficulty.rewards.math_guard``: symbolic equivalence with a hard timeout), and the grounding IoU of
``verl_difficulty.rewards.scorers``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["choice_letter", "choice_correct", "choice_or", "parse_number", "number_correct", "math_correct",
           "relaxed_correct", "anls", "yes_no", "norm_text", "parse_box", "box_iou"]

from ..rewards.scorers import box_iou  # noqa: E402  (re-exported: the project's grounding IoU)

_LETTER_PATTERNS = (
    re.compile(r"^\(([A-Z])\)"),                                   # "(B)", "(B) text"
    re.compile(r"^([A-Z])(?:$|[.:)])"),                            # "B", "B.", "B) text", "B: text"
    re.compile(r"(?:answer|option|choice)\s*(?:is|:)?\s*\(?([A-Z])\)?(?![A-Za-z])", re.IGNORECASE),
    re.compile(r"\(([A-Z])\)"),                                   # "... (C) ..."
)
_NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
_TEX_WRAP_RE = re.compile(r"^\$+|\$+$|\\text\{([^{}]*)\}|\\mathrm\{([^{}]*)\}")


def norm_text(s: str) -> str:
    """Lower case, collapsed whitespace, no surrounding punctuation or TeX dollars."""
    s = str(s).strip().strip("$").strip()
    s = re.sub(r"\s+", " ", s.lower())
    return s.strip(" .,;:!\"'")


def choice_letter(answer: str, choices: Sequence[str] = ()) -> str | None:
    """The option letter an answer names: a letter ("B", "(B)", "B. text", "the answer is B"), else the option
    whose text the answer equals (normalised). None when it names none."""
    s = answer.strip().strip("$").strip()
    s = re.sub(r"^\\(?:text|mathrm)\{(.*)\}$", r"\1", s).strip()
    for pattern in _LETTER_PATTERNS:
        m = pattern.search(s)
        if m and (not choices or ord(m.group(1)) - ord("A") < len(choices)):
            return m.group(1).upper()
    target = norm_text(s)
    for i, c in enumerate(choices):
        if target and norm_text(c) == target:
            return chr(ord("A") + i)
    return None


def choice_correct(answer: str, gold_letter: str, choices: Sequence[str] = ()) -> bool:
    return choice_letter(answer, choices) == str(gold_letter).strip().upper()


def choice_or(open_correct: Callable[[str, Any], bool], flag: str) -> Callable[[Any, str], float]:
    """A sample scorer: the option letter (or option text, from ``meta["options"]``) when ``meta[flag]`` is
    set, ``open_correct(answer, gold)`` otherwise."""
    def score(sample: Any, answer: str) -> float:
        if sample.meta[flag]:
            return float(choice_correct(answer, sample.gold, sample.meta.get("options") or ()))
        return float(open_correct(answer, sample.gold))

    return score


def parse_number(text: str) -> float | None:
    """The number an answer states: the whole answer without thousands separators, units, %, TeX dollars;
    else the last number in it. None when there is none."""
    s = str(text).replace(",", "").replace("\\%", "").replace("%", "").strip().strip("$").strip()
    try:
        return float(s)
    except ValueError:
        pass
    found = _NUMBER_RE.findall(s)
    return float(found[-1]) if found else None


def number_correct(answer: str, gold: float | str, precision: int | None = None) -> bool:
    """Numeric equality; with ``precision`` both sides are rounded to that many decimals first (MathVista's
    float rule), else compared to a relative 1e-6."""
    pred, ref = parse_number(answer), parse_number(str(gold))
    if pred is None or ref is None:
        return False
    if precision is not None:
        return round(pred, int(precision)) == round(ref, int(precision))
    return abs(pred - ref) <= 1e-6 * max(1.0, abs(ref))


def _strip_math(s: str) -> str:
    s = str(s).strip()
    s = _TEX_WRAP_RE.sub(lambda m: m.group(1) or m.group(2) or "", s).strip()
    return s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").rstrip(".").strip()


def math_correct(answer: str, gold: str, timeout_s: float = 3.0) -> bool:
    """Normalised string equality, then plain numbers, then math-verify (symbolic, bounded in time)."""
    from ..rewards.math_guard import compare_plain_numbers, math_verify_available, verify_bounded

    pred, ref = _strip_math(answer), _strip_math(gold)
    if not pred or not ref:
        return False
    if pred == ref or norm_text(pred) == norm_text(ref):
        return True
    same = compare_plain_numbers(ref, pred)
    if same is not None:
        return same
    if not math_verify_available():
        return False
    # math-verify reads bare expressions as well as $...$; wrapping both keeps LaTeX parsing on
    return verify_bounded(f"${ref}$", f"${pred}$", timeout_s).acc >= 1.0


def relaxed_correct(answer: str, gold: str, tolerance: float = 0.05) -> bool:
    """ChartQA's relaxed accuracy: numbers within ``tolerance`` relative error (exact when the target is 0),
    otherwise case-insensitive exact string match."""
    def num(s: str) -> float | None:
        s = s.strip()
        try:
            return float(s.rstrip("%")) / 100.0 if s.endswith("%") else float(s)
        except ValueError:
            return None

    pred, ref = num(str(answer)), num(str(gold))
    if pred is not None and ref is not None:
        return pred == ref if ref == 0 else abs(pred - ref) / abs(ref) <= tolerance
    return str(answer).strip().lower() == str(gold).strip().lower()


def anls(answer: str, golds: Sequence[str], threshold: float = 0.5) -> float:
    """Average Normalized Levenshtein Similarity of one answer (DocVQA): the best over the reference answers
    of 1 - normalised edit distance, on lower-cased stripped strings; 0 when the distance is >= ``threshold``."""
    from rapidfuzz.distance import Levenshtein

    pred = " ".join(str(answer).strip().lower().split())
    best = 0.0
    for g in golds:
        ref = " ".join(str(g).strip().lower().split())
        dist = Levenshtein.normalized_distance(pred, ref)
        best = max(best, 0.0 if dist >= threshold else 1.0 - dist)
    return best


def yes_no(answer: str) -> str | None:
    """'yes' / 'no' when the answer says exactly one of them (first word, else a whole-word mention)."""
    s = norm_text(answer)
    first = s.split(" ", 1)[0].strip(".,!") if s else ""
    if first in ("yes", "no"):
        return first
    has_yes, has_no = re.search(r"\byes\b", s) is not None, re.search(r"\bno\b", s) is not None
    if has_yes != has_no:
        return "yes" if has_yes else "no"
    return None


_BOX_RE = re.compile(r"(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)")


def parse_box(answer: str) -> list[float] | None:
    """The first box [x1, y1, x2, y2] in an answer: JSON (``{"boxes": [...]}``, ``{"bbox_2d": [...]}``, a bare
    list) or the first four comma-separated numbers. None when there is none."""
    m = _BOX_RE.search(str(answer))
    if not m:
        return None
    return [float(v) for v in m.groups()]
