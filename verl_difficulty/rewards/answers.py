"""Input hygiene and the frame every scorer runs in: clean the response, check its format, extract the answer
under the template, read the ground truth as text, and contain every failure as acc 0 with a reason.

Every scorer is a pure function ``(response, ground_truth, **options) -> ScoreResult`` built on
``run_scorer``; it NEVER raises on model output or ground truth. Shared options of every scorer:

    template: name or Template (default "think_answer"), see templates.py
    max_response_chars: refuse longer responses (default 262144), reason "response too long"
    max_answer_chars: refuse longer extracted answers (default 8192; math uses 1000)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .result import ScoreResult
from .templates import Template, get_template

__all__ = ["MAX_ANSWER_CHARS", "MAX_RESPONSE_CHARS", "Reject", "clean_response", "run_scorer", "text_ground_truth"]

MAX_RESPONSE_CHARS = 262_144
MAX_ANSWER_CHARS = 8192


class Reject(Exception):
    """A sample that scores 0; the message is the reason."""


def clean_response(response: Any, max_chars: int) -> str:
    """The response as text (bytes decoded as strict UTF-8, NULs dropped); raises Reject when it is not text,
    too long or not valid UTF-8."""
    if isinstance(response, (bytes, bytearray, memoryview)):
        if len(response) > 4 * max_chars:
            raise Reject("response too long")
        try:
            response = bytes(response).decode("utf-8")
        except UnicodeDecodeError:
            raise Reject("invalid utf-8 in response") from None
    if not isinstance(response, str):
        raise Reject(f"response is not text ({type(response).__name__})")
    if len(response) > max_chars:
        raise Reject(f"response too long ({len(response)} > {max_chars} chars)")
    try:
        response.encode("utf-8")
    except UnicodeEncodeError:
        raise Reject("invalid utf-8 in response (lone surrogates)") from None
    if "\x00" in response:
        response = response.replace("\x00", "")
    return response


def text_ground_truth(gt: Any) -> str:
    """The stripped ground truth as text (numbers as str); raises Reject on None, bool, other types, invalid
    UTF-8 or an empty text."""
    if isinstance(gt, np.ndarray) and gt.ndim == 0:
        gt = gt.item()
    if isinstance(gt, (bytes, bytearray)):
        try:
            gt = bytes(gt).decode("utf-8")
        except UnicodeDecodeError:
            raise Reject("ground truth: invalid utf-8") from None
    if isinstance(gt, bool) or gt is None:
        raise Reject(f"ground truth: unsupported type {type(gt).__name__}")
    if isinstance(gt, (int, float, np.integer, np.floating)):
        return str(gt)
    if not isinstance(gt, str):
        raise Reject(f"ground truth: unsupported type {type(gt).__name__}")
    try:
        gt.encode("utf-8")
    except UnicodeEncodeError:
        raise Reject("ground truth: invalid utf-8") from None
    if not gt.strip():
        raise Reject("ground truth: empty")
    return gt.strip()


def _extract(template: Template, response: Any, options: Mapping[str, Any], answer_limit: int):
    """(format flag, answer or None, reason) of a response; raises Reject."""
    text = clean_response(response, int(options.get("max_response_chars", MAX_RESPONSE_CHARS)))
    fmt = 1 if template.check_format(text) else 0
    answer = template.extract_answer(text)
    if answer is not None and len(answer) > int(options.get("max_answer_chars", answer_limit)):
        return fmt, None, "answer too long"
    return fmt, answer, None


def run_scorer(answer_type: str, response: Any, ground_truth: Any, options: Mapping[str, Any], body: Callable,
               answer_limit: int = MAX_ANSWER_CHARS) -> ScoreResult:
    """Common frame: extraction, format, exception containment. ``body(answer, gt, fmt, options)`` returns
    (acc, reason) or (acc, reason, structure)."""
    res = ScoreResult(answer_type=answer_type, task=answer_type)
    template = get_template(options.get("template"))  # a bad template name is a config error: raise
    try:
        fmt, answer, why = _extract(template, response, options, answer_limit)
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
    except Reject as e:
        res.acc, res.structure = 0.0, 0.0
        res.reason = str(e)[:200]
    except Exception as e:  # noqa: BLE001 - untrusted input must never take the trainer down
        res.acc, res.structure, res.reason = 0.0, 0.0, f"error: {type(e).__name__}: {str(e)[:120]}"
    return res
