"""Number parsing for the numeric scorers: a float from a short answer or from the ground truth."""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Any

import numpy as np

from .answers import Reject, text_ground_truth

__all__ = ["NUMBER_RE", "STRIP_CHARS", "is_number", "number_ground_truth", "parse_number"]

NUMBER_RE = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d{1,3})?%?|[-+]?\.\d+%?")
_THOUSANDS_RE = re.compile(r"^[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_FRACTION_RE = re.compile(r"^([-+]?\d{1,30})\s*/\s*(\d{1,30})$")
_LATEX_FRAC_RE = re.compile(r"^([-+]?)\\[dt]?frac\{(\d{1,30})\}\{(\d{1,30})\}$")
_PLAIN_RE = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d{1,3})?")
# characters around a number that carry no value: currency, punctuation, quotes, markdown
STRIP_CHARS = " \t\n\r$,;:!?\"'`*"


def is_number(v: Any) -> bool:
    """A Python or numpy int/float, not a bool."""
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def parse_number(text: str) -> float:
    """A float from a short answer; raises Reject. Accepts "1,234.5", "3/4", "\\frac{3}{4}", "50%" (-> 50),
    "1e3", "$12", "12.", "−5" (Unicode minus) and, when the answer is a sentence, its single number
    (a sign doubled or left dangling next to it, as in "--5", "5-", "A-5", is refused: the sign is unclear)."""
    s = text.strip().strip(STRIP_CHARS).strip().replace("\u2212", "-")
    if s.startswith("\\boxed{") and s.endswith("}"):
        s = s[len("\\boxed{") : -1].strip()
    if not s:
        raise Reject("empty answer")
    if len(s) > 200:
        raise Reject("number answer too long")
    val = _try_number(s)
    if val is None:
        found = list(NUMBER_RE.finditer(s))
        if len(found) > 1:
            raise Reject("answer holds several numbers")
        if found:
            m = found[0]
            before, after = s[: m.start()], s[m.end() :]
            if (before.rstrip().endswith(("+", "-")) or after.lstrip().startswith(("+", "-"))
                    or (m.group()[0] in "+-" and before[-1:].isalnum())):
                raise Reject("malformed number (stray sign)")
            val = _try_number(m.group())
    if val is None:
        raise Reject("answer is not a number")
    if not math.isfinite(val):
        raise Reject("answer is not a finite number")
    return val


def _try_number(s: str) -> float | None:
    """The value of a text that is exactly one number (percent sign, thousands commas, fraction), else None."""
    s = s.strip()
    if s.endswith("%"):
        s = s[:-1].strip()
    if s.endswith("\\%"):
        s = s[:-2].strip()
    s = s.rstrip(".")
    if _THOUSANDS_RE.match(s):
        s = s.replace(",", "")
    m = _FRACTION_RE.match(s) or _LATEX_FRAC_RE.match(s)
    if m:
        if len(m.groups()) == 3:
            sign, num, den = m.groups()
            num = sign + num
        else:
            num, den = m.groups()
        if int(den) == 0:
            return None
        return float(Fraction(int(num), int(den)))
    if not _PLAIN_RE.fullmatch(s):
        return None
    try:
        return float(s)
    except (ValueError, OverflowError):
        return None


def number_ground_truth(gt: Any) -> float:
    """The ground truth as a finite float (a number, a one-element list or a number text); raises Reject."""
    if isinstance(gt, np.ndarray) and gt.ndim == 0:
        gt = gt.item()
    if isinstance(gt, (list, tuple, np.ndarray)) and len(gt) == 1:
        gt = gt[0]
    if isinstance(gt, bool) or gt is None:
        raise Reject(f"ground truth: unsupported type {type(gt).__name__}")
    if isinstance(gt, (int, float, np.integer, np.floating)):
        v = float(gt)
    else:
        text = text_ground_truth(gt)
        v = _try_number(text.strip(STRIP_CHARS).replace("\u2212", "-"))
        if v is None:
            raise Reject("ground truth is not a number")
    if not math.isfinite(v):
        raise Reject("ground truth is not a finite number")
    return v
