"""Chart, document and OCR benchmarks: ChartQA, CharXiv (reasoning questions), DocVQA, OCRBench."""

from __future__ import annotations

from pathlib import Path

from .base import Benchmark, accuracy_by
from .io import Sample, as_list, decode_image, read_rows
from .scoring import anls, math_correct, norm_text, number_correct, parse_number, relaxed_correct

__all__ = ["CHARTQA", "CHARXIV", "DOCVQA", "OCRBENCH"]


# -------------------------------------------------------------------------------------------------- ChartQA


def load_chartqa(root: Path, split: str, limit: int | None) -> list[Sample]:
    """lmms-lab/ChartQA (``question``, ``answer``, ``type``, ``image``); HuggingFaceM4/ChartQA's ``query`` /
    ``label`` / ``human_or_machine`` are read too."""
    rows = read_rows(root, split, ("image",), "chartqa", limit)
    out = []
    for i, r in enumerate(rows):
        question = r.get("question", r.get("query"))
        answer = r["answer"] if "answer" in r else (as_list(r.get("label")) or [None])[0]
        if question is None or answer is None:
            raise ValueError(f"chartqa: row {i} of {r['_file']} lacks question/answer (or query/label)")
        kind = r.get("type", r.get("human_or_machine", ""))
        out.append(Sample(f"chartqa-{i}", question, [decode_image(r["image"], root)], "open-ended", str(answer),
                          {"type": str(kind)}))
    return out


CHARTQA = Benchmark(
    "chartqa", "ChartQA", "lmms-lab/ChartQA", "test", "relaxed accuracy", True,
    "official relaxed accuracy: numbers within 5% relative error, other answers exact (case-insensitive); "
    "human and augmented test sets together (per-set accuracy in the JSON)",
    load_chartqa, lambda s, a: float(relaxed_correct(a, s.gold)), accuracy_by("type"))


# -------------------------------------------------------------------------------------------------- CharXiv


def load_charxiv(root: Path, split: str, limit: int | None) -> list[Sample]:
    rows = read_rows(root, split, ("image", "reasoning_q", "reasoning_a"), "charxiv", limit)
    return [Sample(str(r.get("figure_path") or f"charxiv-{i}"), r["reasoning_q"], [decode_image(r["image"], root)],
                   "open-ended", str(r["reasoning_a"])) for i, r in enumerate(rows)]


def score_charxiv(s: Sample, answer: str) -> float:
    if parse_number(s.gold) is not None and norm_text(s.gold).replace(".", "", 1).lstrip("-").isdigit():
        return float(number_correct(answer, s.gold) or math_correct(answer, s.gold))
    return float(norm_text(answer) == norm_text(s.gold) or math_correct(answer, s.gold))


CHARXIV = Benchmark(
    "charxiv", "CharXiv (RQ)", "princeton-nlp/CharXiv", "validation", "accuracy", False,
    "official: GPT-4o grades the response against the reasoning answer; here numbers equal (relative 1e-6), "
    "text equal after normalisation or math-verify equivalent; reasoning questions only",
    load_charxiv, score_charxiv)


# --------------------------------------------------------------------------------------------------- DocVQA


def load_docvqa(root: Path, split: str, limit: int | None) -> list[Sample]:
    rows = read_rows(root, split, ("questionId", "question", "answers", "image"), "docvqa", limit)
    return [Sample(str(r["questionId"]), r["question"], [decode_image(r["image"], root)], "OCR",
                   [str(a) for a in as_list(r["answers"])]) for r in rows]


DOCVQA = Benchmark(
    "docvqa", "DocVQA", "lmms-lab/DocVQA", "validation", "ANLS", True,
    "official ANLS (threshold 0.5, best over the reference answers); validation split (the test answers are "
    "hidden behind the official server)",
    load_docvqa, lambda s, a: anls(a, s.gold))


# ------------------------------------------------------------------------------------------------- OCRBench


def load_ocrbench(root: Path, split: str, limit: int | None) -> list[Sample]:
    rows = read_rows(root, split, ("dataset", "question", "answer", "image"), "ocrbench", limit)
    return [Sample(f"ocrbench-{i}", r["question"], [decode_image(r["image"], root)], "OCR",
                   [str(a) for a in as_list(r["answer"])], {"dataset": r["dataset"]}) for i, r in enumerate(rows)]


def score_ocrbench(s: Sample, answer: str) -> float:
    """OCRBench's rule: a reference contained in the prediction; HME100k (formulas) with all spaces removed,
    the others lower-cased."""
    if s.meta["dataset"] == "HME100k":
        pred = answer.strip().replace("\n", " ").replace(" ", "")
        return float(any(g.strip().replace("\n", " ").replace(" ", "") in pred for g in s.gold))
    pred = answer.lower().strip().replace("\n", " ")
    return float(any(g.lower().strip().replace("\n", " ") in pred for g in s.gold))


def _ocrbench_aggregate(samples: list[Sample], scores: list[float]) -> tuple[float, dict]:
    # the benchmark's 0-1000 score: the number right out of its 1000 questions (scaled for a subset)
    return 1000.0 * sum(scores) / len(scores), {"correct": int(sum(scores))}


OCRBENCH = Benchmark(
    "ocrbench", "OCRBench", "echo840/OCRBench", "test", "score (/1000)", True,
    "official rule: a reference answer is a substring of the prediction (lower-cased; HME100k without spaces); "
    "score = number right out of 1000",
    load_ocrbench, score_ocrbench, _ocrbench_aggregate)
