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
import threading
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

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
EXTRA_INFO_KEYS = ("acc", "format", "structure", "length_score", "task", "answer_type", "reason")


@dataclass
class ScoreResult:
    acc: float = 0.0
    format: int = 0
    structure: float = 0.0
    reason: str = ""
    answer_type: str = ""
    task: str = ""
    length_score: float = 0.0

    def to_extra_info(self) -> dict[str, Any]:
        return {
            "acc": float(self.acc),
            "format": int(self.format),
            "structure": float(self.structure),
            "length_score": float(self.length_score),
            "task": str(self.task or self.answer_type),
            "answer_type": str(self.answer_type),
            "reason": str(self.reason),
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
    "1e3", "$12", "12." and, when the answer is a sentence, its single number."""
    s = text.strip().strip(_STRIP_CHARS).strip()
    if s.startswith("\\boxed{") and s.endswith("}"):
        s = s[len("\\boxed{") : -1].strip()
    if not s:
        raise _Reject("empty answer")
    if len(s) > 200:
        raise _Reject("number answer too long")
    val = _try_number(s)
    if val is None:
        found = _NUM_RE.findall(s)
        if len(found) == 1:
            val = _try_number(found[0])
        elif len(found) > 1:
            raise _Reject("answer holds several numbers")
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
        v = _try_number(text.strip(_STRIP_CHARS))
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
_MC_LETTER_RE = re.compile(r"^[\(\[]?([A-Z])[\)\]]?(?:[\.\):,]\s*|\s+|$)")
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
        return m.group(1), s[m.end() :].strip()
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


def _math_body(answer, gt, fmt, options):
    gt_text = _as_text_gt(gt)
    if len(gt_text) > MATH_MAX_ANSWER_CHARS:
        raise _Reject("ground truth too long")
    if _norm_math_str(answer) == _norm_math_str(gt_text):
        return 1.0, "exact match"
    try:
        from math_verify import parse, verify
    except ImportError:
        return 0.0, "mismatch (math_verify not installed: exact match only)"
    # math_verify's timeouts use signal.alarm, which only works in the main thread; verl's reward loop runs
    # scorers in executor threads. There the timeouts are disabled and the answer-size cap is the guard.
    in_main = threading.current_thread() is threading.main_thread()
    timeout = int(options.get("math_timeout_s", 5)) if in_main else None
    try:
        gold = parse(f"${gt_text}$", parsing_timeout=timeout) or parse(gt_text, parsing_timeout=timeout)
        pred = parse(answer, parsing_timeout=timeout)
        if not pred and "$" not in answer:
            pred = parse(f"${answer}$", parsing_timeout=timeout)
    except Exception:  # noqa: BLE001
        gold, pred = [], []
    if not gold or not pred:
        return 0.0, "mismatch (math_verify could not parse; exact match only)"
    try:
        ok = verify(gold, pred, timeout_seconds=timeout)
    except Exception:  # noqa: BLE001
        return 0.0, "mismatch (math_verify error)"
    return (1.0, "symbolic match") if ok else (0.0, "symbolic mismatch")


def score_math(response, ground_truth, **options) -> ScoreResult:
    """Symbolic equivalence with math_verify (parse + verify, timeouts ``math_timeout_s``=5 in the main
    thread); normalised exact string match first and as the fallback when parsing fails."""
    return _run("math", response, ground_truth, options, _math_body, answer_limit=MATH_MAX_ANSWER_CHARS)


# --- OCR ---------------------------------------------------------------------------------------------------


def _ocr_words(s: str) -> list[str]:
    s = unicodedata.normalize("NFKC", s).casefold()
    s = "".join(" " if unicodedata.category(c)[0] in "PSZC" else c for c in s)
    return s.split()


def word_error_rate(reference: Sequence[str], hypothesis: Sequence[str]) -> float:
    """Word-level Levenshtein distance / len(reference) (may exceed 1); 0 for two empty sequences."""
    n, m = len(reference), len(hypothesis)
    if n == 0:
        return 0.0 if m == 0 else float(m)
    if m == 0:
        return 1.0
    vocab: dict[str, int] = {}
    ref = [vocab.setdefault(w, len(vocab)) for w in reference]
    hyp = [vocab.setdefault(w, len(vocab)) for w in hypothesis]
    prev = list(range(m + 1))
    for i in range(1, n + 1):
        r = ref[i - 1]
        cur = [i] + [0] * m
        for j in range(1, m + 1):
            cost = prev[j - 1] + (r != hyp[j - 1])
            a = prev[j] + 1
            b = cur[j - 1] + 1
            cur[j] = min(cost, a, b)
        prev = cur
    return prev[m] / n


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

_BOX_KEYS = ("bbox_2d", "bbox", "box", "box_2d")
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


def _hungarian_min(cost: list[list[float]]) -> list[int]:
    """Minimum-cost assignment for an n x m cost matrix with n <= m (Kuhn-Munkres with potentials, O(n^2 m)).
    Returns, for each row, its column."""
    n, m = len(cost), len(cost[0])
    inf = float("inf")
    u, v = [0.0] * (n + 1), [0.0] * (m + 1)
    p, way = [0] * (m + 1), [0] * (m + 1)  # p[j]: row matched to column j (1-based, 0 = none)
    for i in range(1, n + 1):
        p[0] = i
        j0 = 0
        minv = [inf] * (m + 1)
        used = [False] * (m + 1)
        while True:
            used[j0] = True
            i0, delta, j1 = p[j0], inf, 0
            row = cost[i0 - 1]
            for j in range(1, m + 1):
                if not used[j]:
                    cur = row[j - 1] - u[i0] - v[j]
                    if cur < minv[j]:
                        minv[j], way[j] = cur, j0
                    if minv[j] < delta:
                        delta, j1 = minv[j], j
            for j in range(m + 1):
                if used[j]:
                    u[p[j]] += delta
                    v[j] -= delta
                else:
                    minv[j] -= delta
            j0 = j1
            if p[j0] == 0:
                break
        while j0:
            j1 = way[j0]
            p[j0] = p[j1]
            j0 = j1
    assign = [0] * n
    for j in range(1, m + 1):
        if p[j]:
            assign[p[j] - 1] = j - 1
    return assign


def max_weight_matching(weights: np.ndarray) -> float:
    """Largest total weight of a one-to-one matching of rows to columns (each used at most once).
    Uses scipy.optimize.linear_sum_assignment when scipy is importable, else a pure-Python Hungarian."""
    w = np.asarray(weights, dtype=np.float64)
    if w.size == 0:
        return 0.0
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError:
        t = w if w.shape[0] <= w.shape[1] else w.T
        cols = _hungarian_min((-t).tolist())
        return float(sum(t[i, c] for i, c in enumerate(cols)))
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
    ``structure_bonus`` (0.25) when the answer is valid box JSON and the format holds, else 0."""
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

# OpenVLThinkerV2 domains -> answer type (project default; spatial reasoning answers are mostly options).
DOMAIN_TO_TASK = {
    "spatial_grounding": "grounding",
    "spatial_reasoning": "multiple_choice",
    "general_vqa": "multiple_choice",
    "science_vqa": "multiple_choice",
    "math": "math",
    "chart": "numerical",
    "ocr": "ocr",
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
    2. extra_info["task"] / "domain": a domain or answer type.
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
    for key in ("task", "domain"):
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
_RESERVED_KWARGS = {
    "length_shaping", "max_response_length", "length_thresholds", "w_fmt", "w_len", "response_length",
    "chars_per_token", "task_type", "reward_router_address", "reward_model_tokenizer", "sandbox_fusion_url",
    "concurrent_semaphore", "memory_limit_mb",
}


def _response_tokens(solution_str: Any, info: Mapping, kwargs: Mapping) -> float:
    for v in (kwargs.get("response_length"), info.get("response_length"), info.get("response_len")):
        if v is None:
            continue
        if isinstance(v, np.ndarray):
            v = v.reshape(-1)[0] if v.size else None
        if _is_num(v):
            return float(v)
    n = len(solution_str) if isinstance(solution_str, (str, bytes)) else 0
    return n / float(kwargs.get("chars_per_token", 4.0))


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs) -> dict[str, Any]:
    """verl custom reward function (``reward.custom_reward_function.path=pkg://verl_difficulty.rewards``,
    ``name=compute_score``; options via ``custom_reward_function.reward_kwargs``).

    Returns {"score": overall, acc, format, structure, length_score, task, answer_type, reason}.
    Options (reward_kwargs): template, length_shaping (False), max_response_length (needed with length
    shaping), length_thresholds ({task: [l_min, l_low, l_high, l_max] tokens | {"fractions": [...]}}),
    w_fmt (0.1), w_len (0.1), task_type (force one), chars_per_token (4.0, only when no token count is
    given) and any scorer option (rel_tol, decimals, structure_bonus, coord_max, ...). Per sample, extra_info
    may carry problem_type/task, choices/options, image_size, template, response_length.
    """
    info = extra_info if isinstance(extra_info, Mapping) else {}
    forced = kwargs.get("task_type")
    if forced:
        task, answer_type = resolve_task(None, {"problem_type": forced})
    else:
        task, answer_type = resolve_task(data_source, info)
    options = {k: v for k, v in kwargs.items() if k not in _RESERVED_KWARGS}
    for src, dst in PER_SAMPLE_OPTIONS.items():
        if info.get(src) is not None and dst not in options:
            options[dst] = info[src]
    result = SCORERS[answer_type](solution_str, ground_truth, **options)
    result.task = task
    length_shaping = bool(kwargs.get("length_shaping", False))
    if length_shaping:
        from .length import length_reward, thresholds_for_task

        max_len = kwargs.get("max_response_length")
        if max_len is None:
            raise ValueError("length_shaping=True needs max_response_length in reward_kwargs")
        th = thresholds_for_task(task if task != "unknown" else answer_type, int(max_len),
                                 kwargs.get("length_thresholds"))
        result.length_score = length_reward(_response_tokens(solution_str, info, kwargs), th)
    overall = overall_score(result, length_shaping=length_shaping, w_fmt=float(kwargs.get("w_fmt", 0.1)),
                            w_len=float(kwargs.get("w_len", 0.1)))
    return {"score": float(overall), **result.to_extra_info()}
