"""OCR scorer: 1 - word error rate over normalised words (rapidfuzz edit distance)."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

from ..answers import Reject, run_scorer, text_ground_truth
from ..result import ScoreResult

__all__ = ["OCR_MAX_WORDS", "score_ocr", "word_error_rate"]

OCR_MAX_WORDS = 2000

def _ocr_words(s: str) -> list[str]:
    s = unicodedata.normalize("NFKC", s).casefold()
    s = "".join(" " if unicodedata.category(c)[0] in "PSZC" else c for c in s)
    return s.split()


def word_error_rate(reference: Sequence[str], hypothesis: Sequence[str]) -> float:
    """Word-level Levenshtein distance / len(reference) (may exceed 1); 0 for two empty sequences."""
    from rapidfuzz.distance import Levenshtein  # C-level edit distance over word lists

    n, m = len(reference), len(hypothesis)
    if n == 0:
        return 0.0 if m == 0 else float(m)
    return Levenshtein.distance(list(reference), list(hypothesis)) / n


def _ocr_body(answer, gt, fmt, options):
    ref = _ocr_words(text_ground_truth(gt))
    hyp = _ocr_words(answer)
    max_words = int(options.get("ocr_max_words", OCR_MAX_WORDS))
    if len(ref) > max_words:
        raise Reject(f"ground truth longer than {max_words} words")
    if not ref:
        return (1.0, "both empty") if not hyp else (0.0, "gt has no words")
    if abs(len(hyp) - len(ref)) >= len(ref):  # edit distance >= length gap >= |ref|: WER >= 1, skip the DP
        return 0.0, "wer >= 1 (length gap)"
    wer = word_error_rate(ref, hyp)
    return max(0.0, 1.0 - wer), f"wer={wer:.3f}"


def score_ocr(response, ground_truth, **options) -> ScoreResult:
    """acc = clip(1 - WER, 0, 1). Words: NFKC + casefold, punctuation/symbols/controls -> spaces, split on
    whitespace. Ground truth over ``ocr_max_words`` (2000) words is refused."""
    return run_scorer("ocr", response, ground_truth, options, _ocr_body)
