"""Multi-task answer scorers (OpenVLThinkerV2 multi-task reward, spec task_shaping.md).

Every scorer is a pure function ``(response, ground_truth, **options) -> ScoreResult`` and NEVER raises on
model output or ground truth: anything malformed scores acc 0 with a ``reason``. ``ScoreResult.to_extra_info``
returns the same keys for every scorer (verl collates reward extra info by the first sample's keys).

Shared options of every scorer:
    template: name or Template (default "think_answer"), see templates.py
    max_response_chars: refuse longer responses (default 262144), reason "response too long"
    max_answer_chars: refuse longer extracted answers (default 8192; math uses 1000)
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from .templates import Template, get_template

__all__ = [
    "ScoreResult",
    "EXTRA_INFO_KEYS",
    "SCORERS",
    "TASK_ALIASES",
    "DOMAIN_TO_TASK",
    "score",
    "resolve_task",
    "overall_score",
    "score_multiple_choice",
    "score_numerical",
    "score_regression",
    "score_math",
    "score_ocr",
    "score_grounding",
    "score_counting",
    "word_error_rate",
    "box_iou",
    "max_weight_matching",
    "compute_score",
]

MAX_RESPONSE_CHARS = 262_144
MAX_ANSWER_CHARS = 8192
MATH_MAX_ANSWER_CHARS = 1000
DEFAULT_STRUCTURE_BONUS = 0.25
OCR_MAX_WORDS = 2000
MAX_BOXES = 64

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


class _Reject(Exception):
    """Internal: a sample that scores 0; the message is the reason."""


# ----------------------------------------------------------------------------------------------------------
# Input hygiene
# ----------------------------------------------------------------------------------------------------------


def _clean_response(response: Any, max_chars: int) -> str:
    if isinstance(response, (bytes, bytearray, memoryview)):
        if len(response) > 4 * max_chars:
            raise _Reject("response too long")
        try:
            response = bytes(response).decode("utf-8")
        except UnicodeDecodeError:
            raise _Reject("invalid utf-8 in response") from None
    if not isinstance(response, str):
        raise _Reject(f"response is not text ({type(response).__name__})")
    if len(response) > max_chars:
        raise _Reject(f"response too long ({len(response)} > {max_chars} chars)")
    try:
        response.encode("utf-8")
    except UnicodeEncodeError:
        raise _Reject("invalid utf-8 in response (lone surrogates)") from None
    if "\x00" in response:
        response = response.replace("\x00", "")
    return response


def _as_text_gt(gt: Any) -> str:
    if isinstance(gt, np.ndarray) and gt.ndim == 0:
        gt = gt.item()
    if isinstance(gt, (bytes, bytearray)):
        try:
            gt = bytes(gt).decode("utf-8")
        except UnicodeDecodeError:
            raise _Reject("ground truth: invalid utf-8") from None
    if isinstance(gt, bool) or gt is None:
        raise _Reject(f"ground truth: unsupported type {type(gt).__name__}")
    if isinstance(gt, (int, float, np.integer, np.floating)):
        return str(gt)
    if not isinstance(gt, str):
        raise _Reject(f"ground truth: unsupported type {type(gt).__name__}")
    try:
        gt.encode("utf-8")
    except UnicodeEncodeError:
        raise _Reject("ground truth: invalid utf-8") from None
    if not gt.strip():
        raise _Reject("ground truth: empty")
    return gt.strip()


def _prepare(template: Template, response: Any, options: Mapping[str, Any], answer_limit: int = MAX_ANSWER_CHARS):
    """(template, format flag, answer or None, reason) for a response; raises _Reject."""
    text = _clean_response(response, int(options.get("max_response_chars", MAX_RESPONSE_CHARS)))
    fmt = 1 if template.check_format(text) else 0
    answer = template.extract_answer(text)
    if answer is not None and len(answer) > int(options.get("max_answer_chars", answer_limit)):
        return template, fmt, None, "answer too long"
    return template, fmt, answer, None


def _run(answer_type: str, response: Any, ground_truth: Any, options: Mapping[str, Any], body: Callable,
         answer_limit: int = MAX_ANSWER_CHARS) -> ScoreResult:
    """Common frame: extraction, format, exception containment. ``body(answer, gt, fmt, options)`` returns
    (acc, reason) or (acc, reason, structure)."""
    res = ScoreResult(answer_type=answer_type, task=answer_type)
    template = get_template(options.get("template"))  # a bad template name is a config error: raise
    try:
        _, fmt, answer, why = _prepare(template, response, options, answer_limit)
        res.format = fmt
        if answer is None:
            res.reason = why or "no answer found"
            return res
        out = body(answer, ground_truth, fmt, options)
        acc, reason = float(out[0]), out[1]
        if not math.isfinite(acc):
            acc, reason = 0.0, "non-finite accuracy"
        res.acc = min(1.0, max(0.0, acc))
        res.reason = reason
        if len(out) > 2:
            res.structure = float(out[2]) if fmt else 0.0
    except _Reject as e:
        res.acc, res.structure = 0.0, 0.0
        res.reason = str(e)[:200]
    except Exception as e:  # noqa: BLE001 - untrusted input must never take the trainer down
        res.acc, res.structure, res.reason = 0.0, 0.0, f"error: {type(e).__name__}: {str(e)[:120]}"
    return res


# ----------------------------------------------------------------------------------------------------------
# Number parsing (numerical, regression, counting)
# ----------------------------------------------------------------------------------------------------------

_NUM_RE = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d{1,3})?%?|[-+]?\.\d+%?")
_THOUSANDS_RE = re.compile(r"^[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_FRACTION_RE = re.compile(r"^([-+]?\d{1,30})\s*/\s*(\d{1,30})$")
_LATEX_FRAC_RE = re.compile(r"^([-+]?)\\[dt]?frac\{(\d{1,30})\}\{(\d{1,30})\}$")
_STRIP_CHARS = " \t\n\r$,;:!?\"'`*"


def _parse_number(text: str) -> float:
    """A float from a short answer; raises _Reject. Accepts "1,234.5", "3/4", "\\frac{3}{4}", "50%" (-> 50),
    "1e3", "$12", "12.", "−5" (Unicode minus) and, when the answer is a sentence, its single number
    (a sign doubled or left dangling next to it, as in "--5", "5-", "A-5", is refused: the sign is unclear)."""
    s = text.strip().strip(_STRIP_CHARS).strip().replace("\u2212", "-")
    if s.startswith("\\boxed{") and s.endswith("}"):
        s = s[len("\\boxed{") : -1].strip()
    if not s:
        raise _Reject("empty answer")
    if len(s) > 200:
        raise _Reject("number answer too long")
    val = _try_number(s)
    if val is None:
        found = list(_NUM_RE.finditer(s))
        if len(found) > 1:
            raise _Reject("answer holds several numbers")
        if found:
            m = found[0]
            before, after = s[: m.start()], s[m.end() :]
            if (before.rstrip().endswith(("+", "-")) or after.lstrip().startswith(("+", "-"))
                    or (m.group()[0] in "+-" and before[-1:].isalnum())):
                raise _Reject("malformed number (stray sign)")
            val = _try_number(m.group())
    if val is None:
        raise _Reject("answer is not a number")
    if not math.isfinite(val):
        raise _Reject("answer is not a finite number")
    return val


def _try_number(s: str) -> float | None:
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
    if not re.fullmatch(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d{1,3})?", s):
        return None
    try:
        return float(s)
    except (ValueError, OverflowError):
        return None


def _gt_number(gt: Any) -> float:
    if isinstance(gt, np.ndarray) and gt.ndim == 0:
        gt = gt.item()
    if isinstance(gt, (list, tuple, np.ndarray)) and len(gt) == 1:
        gt = gt[0]
    if isinstance(gt, bool) or gt is None:
        raise _Reject(f"ground truth: unsupported type {type(gt).__name__}")
    if isinstance(gt, (int, float, np.integer, np.floating)):
        v = float(gt)
    else:
        text = _as_text_gt(gt)
        v = _try_number(text.strip(_STRIP_CHARS).replace("\u2212", "-"))
        if v is None:
            raise _Reject("ground truth is not a number")
    if not math.isfinite(v):
        raise _Reject("ground truth is not a finite number")
    return v


# ----------------------------------------------------------------------------------------------------------
# Scorers
# ----------------------------------------------------------------------------------------------------------


def _numerical_body(answer, gt, fmt, options):
    g = _gt_number(gt)
    p = _parse_number(answer)
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
    return _run("numerical", response, ground_truth, options, _numerical_body)


def _regression_body(answer, gt, fmt, options):
    g = _gt_number(gt)
    p = _parse_number(answer)
    if g == 0.0:
        zero_tol = float(options.get("zero_tol", 1e-9))
        return (1.0, "exact zero") if abs(p) <= zero_tol else (0.0, "gt is 0, pred is not")
    acc = max(0.0, 1.0 - abs(p - g) / abs(g))
    return acc, "relative accuracy"


def score_regression(response, ground_truth, **options) -> ScoreResult:
    """acc = max(0, 1 - |pred - gt| / |gt|); gt == 0: acc 1 iff |pred| <= zero_tol (1e-9), else 0."""
    return _run("regression", response, ground_truth, options, _regression_body)


_NUMBER_WORDS = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
        "sixteen seventeen eighteen nineteen twenty".split()
    )
}
_WORD_RE = re.compile(r"[a-z]+")


def _parse_count(text: str) -> int:
    s = text.strip().strip(_STRIP_CHARS).strip().lower().rstrip(".")
    if s in _NUMBER_WORDS:
        return _NUMBER_WORDS[s]
    try:
        v = _parse_number(s)
    except _Reject as e:
        words = [w for w in _WORD_RE.findall(s) if w in _NUMBER_WORDS]
        if len(words) == 1 and not _NUM_RE.search(s):
            return _NUMBER_WORDS[words[0]]
        raise e
    if v != int(v):
        raise _Reject("count is not an integer")
    return int(v)


def _counting_body(answer, gt, fmt, options):
    g = _gt_number(gt)
    if g != int(g):
        raise _Reject("ground truth is not an integer")
    if len(answer) > 200:
        raise _Reject("count answer too long")
    p = _parse_count(answer)
    return (1.0, "match") if p == int(g) else (0.0, "mismatch")


def score_counting(response, ground_truth, **options) -> ScoreResult:
    """Exact integer match. Accepts digits ("3", "3.0", "1,024") and English number words zero..twenty."""
    return _run("counting", response, ground_truth, options, _counting_body)


# --- multiple choice ---------------------------------------------------------------------------------------

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
    gt_text = _as_text_gt(gt)
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
    return _run("multiple_choice", response, ground_truth, options, _mc_body)


# --- math --------------------------------------------------------------------------------------------------

_TEX_NOISE_RE = re.compile(r"\\(?:left|right|,|;|!|\s)|\$|\s+")


def _norm_math_str(s: str) -> str:
    s = s.strip()
    if s.startswith("\\boxed{") and s.endswith("}"):
        s = s[len("\\boxed{") : -1]
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    return _TEX_NOISE_RE.sub("", s).rstrip(".")


def _math_timeout(options: Mapping[str, Any]) -> float:
    from .math_guard import DEFAULT_TIMEOUT_S

    v = options.get("math_timeout_s")
    if v is None:
        return DEFAULT_TIMEOUT_S
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 < v <= 600):
        raise ValueError(f"math_timeout_s={v!r}: must be a number of seconds in (0, 600] (default "
                         f"{DEFAULT_TIMEOUT_S})")
    return float(v)


def _math_body(answer, gt, fmt, options):
    from .math_guard import compare_plain_numbers, math_verify_available, verify_bounded

    gt_text = _as_text_gt(gt)
    if len(gt_text) > MATH_MAX_ANSWER_CHARS:
        raise _Reject("ground truth too long")
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
    verdict = verify_bounded(gt_text, answer, _math_timeout(options))
    return verdict.acc, verdict.reason


def score_math(response, ground_truth, **options) -> ScoreResult:
    """Normalised exact string match, then plain numbers compared directly, then math_verify (parse +
    verify) in a worker process with a hard wall-clock bound ``math_timeout_s`` (default 3 s; reason
    "timeout", ``timeout`` 1). Expressions too large for sympy (huge powers, factorials, towers) score 0
    without parsing. A bad ``math_timeout_s`` raises ValueError (a configuration error, like a bad template)."""
    from .math_guard import TIMEOUT_REASON

    _math_timeout(options)  # a configuration error: raise, do not score 0
    res = _run("math", response, ground_truth, options, _math_body, answer_limit=MATH_MAX_ANSWER_CHARS)
    res.timeout = int(res.reason.startswith(TIMEOUT_REASON))
    return res


# --- OCR ---------------------------------------------------------------------------------------------------


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
    ref = _ocr_words(_as_text_gt(gt))
    hyp = _ocr_words(answer)
    max_words = int(options.get("ocr_max_words", OCR_MAX_WORDS))
    if len(ref) > max_words:
        raise _Reject(f"ground truth longer than {max_words} words")
    if not ref:
        return (1.0, "both empty") if not hyp else (0.0, "gt has no words")
    if abs(len(hyp) - len(ref)) >= len(ref):  # edit distance >= length gap >= |ref|: WER >= 1, skip the DP
        return 0.0, "wer >= 1 (length gap)"
    wer = word_error_rate(ref, hyp)
    return max(0.0, 1.0 - wer), f"wer={wer:.3f}"


def score_ocr(response, ground_truth, **options) -> ScoreResult:
    """acc = clip(1 - WER, 0, 1). Words: NFKC + casefold, punctuation/symbols/controls -> spaces, split on
    whitespace. Ground truth over ``ocr_max_words`` (2000) words is refused."""
    return _run("ocr", response, ground_truth, options, _ocr_body)


# --- grounding ---------------------------------------------------------------------------------------------

_BOX_KEYS = ("bbox_2d", "bbox", "box", "box_2d", "boxes")  # "boxes": OpenVLThinkerV2's prompt and data
_FENCE_RE = re.compile(r"^```(?:json|JSON)?\s*(.*?)\s*```$", re.DOTALL)


def _boxes_from_obj(obj: Any, depth: int = 0) -> list[list[float]]:
    """Normalise [x1,y1,x2,y2] / [[...], ...] / {"bbox_2d": [...]} / [{"bbox_2d": ...}, ...] to a list of boxes.
    Raises _Reject on anything else."""
    if depth > 3:
        raise _Reject("box structure too deep")
    if isinstance(obj, np.ndarray):
        obj = obj.tolist()
    if isinstance(obj, Mapping):
        for k in _BOX_KEYS:
            if k in obj:
                return _boxes_from_obj(obj[k], depth + 1)
        raise _Reject("no bbox key in answer object")
    if isinstance(obj, (list, tuple)):
        if len(obj) == 4 and all(_is_num(v) for v in obj):
            return [[float(v) for v in obj]]
        if not obj:
            raise _Reject("empty box list")
        if len(obj) > MAX_BOXES:
            raise _Reject(f"more than {MAX_BOXES} boxes")
        out: list[list[float]] = []
        for item in obj:
            if isinstance(item, np.ndarray):
                item = item.tolist()
            if isinstance(item, (list, tuple)) and len(item) == 4 and all(_is_num(v) for v in item):
                out.append([float(v) for v in item])
            elif isinstance(item, Mapping):
                out.extend(_boxes_from_obj(item, depth + 1))
            else:
                raise _Reject("malformed box (need 4 numbers)")
        return out
    raise _Reject("answer is not a box or list of boxes")


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _parse_box_text(text: str) -> list[list[float]]:
    s = text.strip()
    m = _FENCE_RE.match(s)
    if m:
        s = m.group(1)
    try:
        obj = json.loads(s)
    except (ValueError, RecursionError):
        raise _Reject("malformed JSON answer") from None
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
            gt_boxes = _parse_box_text(_as_text_gt(gt))
        else:
            gt_boxes = _boxes_from_obj(gt)
    except _Reject as e:
        raise _Reject(f"ground truth: {e}") from None
    limits = _limits(options)
    for b in gt_boxes:
        prob = _box_problem(b, None)
        if prob:
            raise _Reject(f"ground truth: {prob}")
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
    return _run("grounding", response, ground_truth, options, _grounding_body)


# ----------------------------------------------------------------------------------------------------------
# Dispatch
# ----------------------------------------------------------------------------------------------------------

SCORERS: dict[str, Callable[..., ScoreResult]] = {
    "multiple_choice": score_multiple_choice,
    "numerical": score_numerical,
    "regression": score_regression,
    "math": score_math,
    "ocr": score_ocr,
    "grounding": score_grounding,
    "counting": score_counting,
}

TASK_ALIASES = {
    "mc": "multiple_choice",
    "multiple-choice": "multiple_choice",
    "multiplechoice": "multiple_choice",
    "choice": "multiple_choice",
    "numeric": "numerical",
    "number": "numerical",
    "free-form": "numerical",
    "count": "counting",
    "detection": "grounding",
    "bbox": "grounding",
    "box": "grounding",
}

# Domains -> the answer type used when a row names no problem_type (spatial reasoning answers are mostly options).
DOMAIN_TO_TASK = {
    "spatial_grounding": "grounding",
    "spatial_reasoning": "multiple_choice",
    "general_vqa": "multiple_choice",
    "science_vqa": "multiple_choice",
    "math": "math",
    "chart": "numerical",
    "ocr": "ocr",
    # the OpenVLThinkerV2 authors' task_type labels (their data and task_type_to_id; the three above with the
    # same names are theirs too)
    "general_vqa_science_stem": "multiple_choice",
    "chart_figure_qa": "numerical",
    "math_reasoning": "math",
}

# Substrings of verl data_source names -> domain (first hit wins, checked in this order).
DATA_SOURCE_HINTS: tuple[tuple[str, str], ...] = (
    ("refcoco", "spatial_grounding"),
    ("grounding", "spatial_grounding"),
    ("ground", "spatial_grounding"),
    ("count", "counting"),
    ("ocr", "ocr"),
    ("docvqa", "ocr"),
    ("textvqa", "ocr"),
    ("chart", "chart"),
    ("figure", "chart"),
    ("plot", "chart"),
    ("spatial", "spatial_reasoning"),
    ("geo", "math"),
    ("math", "math"),
    ("science", "science_vqa"),
    ("scienceqa", "science_vqa"),
    ("vqa", "general_vqa"),
)


def resolve_task(data_source: Any = None, extra_info: Mapping | None = None) -> tuple[str, str]:
    """(task label, answer type) of a sample.

    1. extra_info["problem_type"] (or "answer_type"): an answer type, alias or domain name.
    2. extra_info["task"] / "domain" / "task_type" (the OpenVLThinkerV2 data's field): a domain or answer type;
       it is the task label (per-task length thresholds, metrics) while problem_type picks the scorer.
    3. data_source: exact answer type/domain, else the substring hints in DATA_SOURCE_HINTS.
    4. otherwise multiple_choice (task "unknown").
    """
    info = extra_info if isinstance(extra_info, Mapping) else {}

    def norm(v):
        if not isinstance(v, str):
            return None
        k = v.strip().lower().replace(" ", "_")
        return TASK_ALIASES.get(k, k)

    label = None
    for key in ("task", "domain", "task_type"):
        k = norm(info.get(key))
        if k in DOMAIN_TO_TASK or k in SCORERS:
            label = k
            break
    for key in ("problem_type", "answer_type"):
        k = norm(info.get(key))
        if k in SCORERS:
            return label or k, k
        if k in DOMAIN_TO_TASK:
            return label or k, DOMAIN_TO_TASK[k]
    if label is None:
        k = norm(data_source)
        if k in SCORERS or k in DOMAIN_TO_TASK:
            label = k
        elif k:
            for hint, domain in DATA_SOURCE_HINTS:
                if hint in k:
                    label = domain
                    break
    if label is None:
        return "unknown", "multiple_choice"
    return label, label if label in SCORERS else DOMAIN_TO_TASK[label]


def score(task_type: str, response: Any, ground_truth: Any, **options) -> ScoreResult:
    """Dispatch to the scorer of ``task_type`` (answer type, alias or OpenVLThinkerV2 domain)."""
    k = task_type.strip().lower().replace(" ", "_") if isinstance(task_type, str) else ""
    k = TASK_ALIASES.get(k, k)
    answer_type = k if k in SCORERS else DOMAIN_TO_TASK.get(k)
    if answer_type is None:
        return ScoreResult(reason=f"unknown task type {str(task_type)[:40]!r}", answer_type="unknown", task="unknown")
    res = SCORERS[answer_type](response, ground_truth, **options)
    res.task = k
    return res


def overall_score(result: ScoreResult, *, length_shaping: bool = False, w_fmt: float = 0.1,
                  w_len: float = 0.1) -> float:
    """(1 - w_fmt - w_len)·acc + w_fmt·format + w_len·R_len + structure; w_len counts only with length
    shaping on (the 0.1 is inferred from the authors' commented-out code)."""
    wl = w_len if length_shaping else 0.0
    return (1.0 - w_fmt - wl) * result.acc + w_fmt * result.format + wl * result.length_score + result.structure


# ----------------------------------------------------------------------------------------------------------
# verl custom reward function
# ----------------------------------------------------------------------------------------------------------

# extra_info keys a row may carry -> the scorer option they set for that row
PER_SAMPLE_OPTIONS = {"choices": "choices", "options": "choices", "image_size": "image_size", "template": "template"}
# every option some scorer reads (the rest of a reward_kwargs node is a mistake: see multitask.py)
SCORER_OPTIONS = frozenset({
    "template", "max_response_chars", "max_answer_chars", "abs_tol", "rel_tol", "zero_tol", "decimals", "choices",
    "coord_max", "image_size", "structure_bonus", "math_timeout_s", "ocr_max_words",
})
# keyword arguments verl (or a caller) passes at call time that are not reward settings
_CALL_KWARGS = {"response_length", "chars_per_token", "reward_router_address", "reward_model_tokenizer",
                "sandbox_fusion_url", "concurrent_semaphore", "memory_limit_mb"}
_COMPUTE_SCORE_PREFIX = "reward.custom_reward_function.reward_kwargs"
_CONFIG_CACHE: dict[str, Any] = {}


def _response_tokens(solution_str: Any, info: Mapping, kwargs: Mapping) -> float:
    for v in (kwargs.get("response_length"), info.get("response_length"), info.get("response_len")):
        if v is None:
            continue
        if isinstance(v, np.ndarray):
            v = v.reshape(-1)[0] if v.size else None
        if _is_num(v):
            return float(v)
    n = len(solution_str) if isinstance(solution_str, (str, bytes)) else 0
    cpt = kwargs.get("chars_per_token", 4.0)
    if not _is_num(cpt) or not math.isfinite(cpt) or cpt <= 0:
        raise ValueError(f"{_COMPUTE_SCORE_PREFIX}.chars_per_token={cpt!r}: must be a finite number > 0")
    return n / float(cpt)


def _settings(kwargs: Mapping[str, Any]):
    """The validated MultiTaskRewardConfig of a compute_score call (cached: verl calls once per sample with the
    same reward_kwargs)."""
    from .multitask import MultiTaskRewardConfig

    settings = {k: v for k, v in kwargs.items() if k not in _CALL_KWARGS}
    key = repr(sorted(settings.items(), key=lambda kv: kv[0]))
    cfg = _CONFIG_CACHE.get(key)
    if cfg is None:
        cfg = MultiTaskRewardConfig.from_mapping(settings, prefix=_COMPUTE_SCORE_PREFIX)
        if len(_CONFIG_CACHE) > 64:
            _CONFIG_CACHE.clear()
        _CONFIG_CACHE[key] = cfg
    return cfg


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs) -> dict[str, Any]:
    """verl custom reward function (``reward.custom_reward_function.path=pkg://verl_difficulty.rewards``,
    ``name=compute_score``; options via ``reward.custom_reward_function.reward_kwargs``).

    A thin call into the ``multitask`` reward manager's scorer (``multitask.score_trajectory``) with the same
    validated settings (``MultiTaskRewardConfig``: preset, template, task_key, task_type, w_fmt, w_len,
    length_shaping, max_response_length, length_thresholds and the scorer options); an unknown key or a bad
    value raises a ``RewardConfigError`` naming it. Call-time extras: ``response_length`` (tokens; else
    ``extra_info.response_length``/``response_len``, else characters / ``chars_per_token`` (4.0)).

    Returns {"score": overall, acc, format, structure, length_score, task, answer_type, reason} (the manager's
    extra info without its token count); ``acc`` is the accuracy alone.
    """
    from .multitask import score_trajectory

    cfg = _settings(kwargs)
    info = extra_info if isinstance(extra_info, Mapping) else {}
    length = _response_tokens(solution_str, info, kwargs) if cfg.length_shaping else 0.0
    out = score_trajectory(cfg, data_source=data_source, response=solution_str, ground_truth=ground_truth,
                           extra_info=info, response_length=length)
    del out["response_length"]
    return out
