"""Multiple-choice scorer: letter or option-text match, with ``choices`` mapping between the two."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping

import numpy as np

from ..answers import run_scorer, text_ground_truth
from ..result import ScoreResult

__all__ = ["score_multiple_choice"]

_MC_PREFIX_RE = re.compile(
    r"^(?:the\s+)?(?:final\s+|correct\s+)?(?:answer|option|choice)(?:\s+is)?\s*[:：]?\s*", re.IGNORECASE
)
# A letter answer is "(B)" / "[B]" (text may follow), or "B" followed by nothing or by ".", ")" or ":" and a space:
# "A red car", "A and B", "A, B" are not letter answers (the first letter is not the choice).
_MC_LETTER_RE = re.compile(r"^(?:[\(\[]([A-Z])[\)\]]|([A-Z])(?:[\.\):](?=\s|$)|$))\s*")
# The rest of an answer that only names more letters: "B" in "A. B", "and (C)" in "(A) and (C)", ", D" ...
_MORE_LETTERS_RE = re.compile(r"^(?:(?:[,/&;]|and|or)\s*)?[\(\[]?[A-Z][\)\]\.]?(?:(?:\s*(?:[,/&;]|and|or)\s*|\s+)"
                              r"[\(\[]?[A-Z][\)\]\.]?)*$")
_OPTION_PREFIX_RE = re.compile(r"^[\(\[]?[A-Z][\)\]\.:]\s*")
_NORM_RE = re.compile(r"[^\w]+", re.UNICODE)


def _norm_text(s: str) -> str:
    return _NORM_RE.sub(" ", unicodedata.normalize("NFKC", s).casefold()).strip()


def _mc_letter(s: str) -> tuple[str | None, str]:
    """(letter or None, remaining option text)."""
    s = s.strip().strip("*`$ ").strip()
    for _ in range(2):
        s2 = _MC_PREFIX_RE.sub("", s, count=1)
        if s2 == s:
            break
        s = s2.strip()
    if len(s) == 1 and s.isalpha() and s.isascii():
        return s.upper(), ""
    m = _MC_LETTER_RE.match(s)
    if m:
        return m.group(1) or m.group(2), s[m.end() :].strip()
    return None, s


def _choices(options) -> list[str] | None:
    ch = options.get("choices")
    if ch is None:
        return None
    if isinstance(ch, np.ndarray):
        ch = ch.tolist()
    if isinstance(ch, Mapping):  # {"A": "text", ...}
        ch = [ch[k] for k in sorted(ch)]
    if not isinstance(ch, (list, tuple)) or not all(isinstance(c, str) for c in ch) or len(ch) > 26:
        return None
    return [_OPTION_PREFIX_RE.sub("", c.strip()) for c in ch]


def _mc_body(answer, gt, fmt, options):
    gt_text = text_ground_truth(gt)
    choices = _choices(options)
    g_letter, g_rest = _mc_letter(gt_text)
    if g_letter is not None and g_rest and not _OPTION_PREFIX_RE.match(gt_text.strip()):
        g_letter = None  # "A cat" as a ground truth is option text, not a letter
    g_option = None
    if g_letter is None:
        g_option = _norm_text(gt_text)
        if choices:
            normed = [_norm_text(c) for c in choices]
            if g_option in normed:
                g_letter = chr(ord("A") + normed.index(g_option))
    elif choices and ord(g_letter) - ord("A") < len(choices):
        g_option = _norm_text(choices[ord(g_letter) - ord("A")])
    elif g_rest:
        g_option = _norm_text(g_rest)

    pred_norm = _norm_text(answer)
    if g_option and pred_norm == g_option:
        return 1.0, "option text match"
    p_letter, p_rest = _mc_letter(answer)
    if p_letter is not None and p_rest and _MORE_LETTERS_RE.match(p_rest):
        return 0.0, "several options"
    if p_letter is not None and p_rest and choices:
        normed = [_norm_text(c) for c in choices]
        named = _norm_text(p_rest)
        if named in normed and normed.index(named) != ord(p_letter) - ord("A"):
            return 0.0, "letter and option text disagree"
    if p_letter is not None and g_letter is not None:
        if p_letter == g_letter:
            return 1.0, "letter match"
        return 0.0, "wrong letter"
    if p_letter is None and choices:
        normed = [_norm_text(c) for c in choices]
        if pred_norm in normed:
            p_letter = chr(ord("A") + normed.index(pred_norm))
            return (1.0, "option text match") if p_letter == g_letter else (0.0, "wrong option")
    if g_option and p_rest and _norm_text(p_rest) == g_option:
        return 1.0, "option text match"
    return 0.0, "no matching option"


def score_multiple_choice(response, ground_truth, **options) -> ScoreResult:
    """Letter or option-text match. Tolerates "B", "(B)", "B.", "B) text", "Answer: B", "The answer is (B)";
    the ground truth may be a letter or the option text; ``choices`` (list of option texts, "A. x" prefixes
    stripped, or {"A": text}) maps between letters and texts."""
    return run_scorer("multiple_choice", response, ground_truth, options, _mc_body)
