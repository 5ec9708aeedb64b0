"""Math reasoning benchmarks: MathVista, MathVerse, MathVision, WeMath, OlympiadBench, MMK12.

Their official harnesses extract the answer from free text with a GPT judge (MathVista, MathVerse, WeMath;
MathVision's released rules or GPT); here the answer is the one the recipe's format marks (``<answer>`` or
``\\boxed{}``) and is compared by rule, so every score of this module is APPROXIMATE (OlympiadBench and MMK12
because their own rule-based judges are replaced by math-verify).
"""

from __future__ import annotations

from pathlib import Path

from .base import Benchmark, accuracy_by
from .io import Sample, as_list, decode_image, letters, read_rows
from .scoring import choice_correct, choice_or, math_correct, norm_text, number_correct

__all__ = ["MATHVISTA", "MATHVERSE", "MATHVISION", "WEMATH", "OLYMPIADBENCH", "MMK12"]


def _options_block(options: list[str]) -> str:
    return "\n".join(f"({ch}) {opt}" for ch, opt in zip(letters(len(options)), options))


# ------------------------------------------------------------------------------------------------ MathVista


def load_mathvista(root: Path, split: str, limit: int | None) -> list[Sample]:
    rows = read_rows(root, split, ("pid", "query", "decoded_image", "choices", "answer", "question_type",
                                   "answer_type", "precision"), "mathvista", limit)
    out = []
    for r in rows:
        choices = [str(c) for c in as_list(r["choices"])]
        gold, ptype = r["answer"], "open-ended"
        if r["question_type"] == "multi_choice":
            ptype = "multiple choice"
            gold = letters(len(choices))[choices.index(r["answer"])] if r["answer"] in choices else r["answer"]
        elif r["answer_type"] in ("integer", "float"):
            ptype = "numerical"
        # `query` is the dataset's own prompt: hint (answer type), question, choices
        out.append(Sample(str(r["pid"]), r["query"], [decode_image(r["decoded_image"], root)], ptype, gold,
                          {"choices": choices, "answer_type": r["answer_type"], "precision": r["precision"],
                           "question_type": r["question_type"]}))
    return out


def score_mathvista(s: Sample, answer: str) -> float:
    m = s.meta
    if m["question_type"] == "multi_choice":
        return float(choice_correct(answer, s.gold, m["choices"]))
    if m["answer_type"] == "integer":
        return float(number_correct(answer, s.gold, precision=0))
    if m["answer_type"] == "float":
        precision = m["precision"]
        ok = precision is not None and precision == precision  # None / NaN: compare without rounding
        return float(number_correct(answer, s.gold, precision=int(precision) if ok else None))
    return float(norm_text(answer) == norm_text(s.gold))


MATHVISTA = Benchmark(
    "mathvista", "MathVista", "AI4Math/MathVista", "testmini", "accuracy", False,
    "official: GPT-4 answer extraction, then exact match after normalising by answer_type/precision; here the "
    "marked answer, option letter or text for multi_choice, numbers rounded to `precision` (integer: 0 decimals)",
    load_mathvista, score_mathvista)


# ------------------------------------------------------------------------------------------------ MathVerse


def load_mathverse(root: Path, split: str, limit: int | None) -> list[Sample]:
    rows = read_rows(root, split, ("sample_index", "problem_version", "question", "image", "answer",
                                   "question_type"), "mathverse", limit)
    out = []
    for r in rows:
        mc = r["question_type"] == "multi-choice"
        image = decode_image(r["image"], root)
        out.append(Sample(str(r["sample_index"]), r["question"], [image] if image is not None else [],
                          "multiple choice" if mc else "math", r["answer"],
                          {"multi_choice": mc, "problem_version": r["problem_version"]}))
    return out


MATHVERSE = Benchmark(
    "mathverse", "MathVerse", "AI4Math/MathVerse", "testmini", "accuracy", False,
    "official: GPT-4 answer extraction then GPT-4 judgement; here option letter for multi-choice, math-verify "
    "equivalence for free-form; all problem versions in the files (per-version accuracy in the JSON)",
    load_mathverse, choice_or(math_correct, "multi_choice"), accuracy_by("problem_version"))


# ----------------------------------------------------------------------------------------------- MathVision


def load_mathvision(root: Path, split: str, limit: int | None) -> list[Sample]:
    rows = read_rows(root, split, ("id", "question", "options", "decoded_image", "answer"), "mathvision", limit)
    out = []
    for r in rows:
        options = [str(o) for o in as_list(r["options"])]
        question = r["question"] + ("\nChoices:\n" + _options_block(options) if options else "")
        out.append(Sample(str(r["id"]), question, [decode_image(r["decoded_image"], root)],
                          "multiple choice" if options else "math", str(r["answer"]), {"options": options}))
    return out


MATHVISION = Benchmark(
    "mathvision", "MathVision", "MathLLMs/MathVision", "test", "accuracy", False,
    "official: rule/GPT answer extraction from free text; here option letter (or option text) for choice "
    "questions, math-verify equivalence otherwise",
    load_mathvision, choice_or(math_correct, "options"))


# --------------------------------------------------------------------------------------------------- WeMath


def load_wemath(root: Path, split: str, limit: int | None) -> list[Sample]:
    rows = read_rows(root, split, ("ID", "question", "option", "answer", "image_path"), "wemath", limit)
    out = []
    for i, r in enumerate(rows):
        question = f"{r['question']}\nOptions: {r['option']}"
        out.append(Sample(f"{r['ID']}#{i}", question, [decode_image(r["image_path"], root)], "multiple choice",
                          str(r["answer"]).strip(), {"key": r.get("key")}))
    return out


WEMATH = Benchmark(
    "wemath", "WeMath", "We-Math/We-Math", "testmini", "accuracy", False,
    "official: GPT/regex option extraction, then the four-dimensional (IK/IG/CM/RM) scores; here plain accuracy "
    "of the option letter over all questions (the 4-D strict/loose scores are not computed)",
    load_wemath, lambda s, a: float(choice_correct(a, s.gold)))


# -------------------------------------------------------------------------------------------- OlympiadBench


def load_olympiadbench(root: Path, split: str, limit: int | None) -> list[Sample]:
    rows = read_rows(root, split, ("id", "question", "final_answer"), "olympiadbench", limit)
    out = []
    for r in rows:
        images = [decode_image(r.get(f"image_{k}"), root) for k in range(1, 6)]
        golds = [str(a) for a in as_list(r["final_answer"])]
        question = r["question"] + (f"\n(Unit: {r['unit']})" if r.get("unit") else "")
        config = Path(r["_file"]).relative_to(root).parts[0]  # ids repeat across configs (maths / physics)
        out.append(Sample(f"{config}/{r['id']}", question, [im for im in images if im is not None], "math", golds,
                          {"multiple": bool(r.get("is_multiple_answer"))}))
    return out


def score_olympiadbench(s: Sample, answer: str) -> float:
    golds = s.gold
    if len(golds) > 1 or s.meta["multiple"]:
        parts = [p.strip() for p in answer.split(",")]
        if len(parts) != len(golds):
            return float(math_correct(answer, ", ".join(golds)))
        return float(all(math_correct(p, g) for p, g in zip(parts, golds)))
    return float(bool(golds) and math_correct(answer, golds[0]))


OLYMPIADBENCH = Benchmark(
    "olympiadbench", "OlympiadBench", "Hothan/OlympiadBench", "train", "accuracy", False,
    "official: the authors' sympy judge with per-problem precision; here math-verify equivalence of each final "
    "answer (multiple answers comma-separated, in order); the configs present in the folder (e.g. OE_MM_*_en_COMP)",
    load_olympiadbench, score_olympiadbench)


# ---------------------------------------------------------------------------------------------------- MMK12


def load_mmk12(root: Path, split: str, limit: int | None) -> list[Sample]:
    rows = read_rows(root, split, ("answer",), "mmk12", limit)
    out = []
    for i, r in enumerate(rows):
        question = r.get("question") or r.get("problem")
        image = r.get("image") if r.get("image") is not None else (as_list(r.get("images")) or [None])[0]
        if question is None:
            raise ValueError(f"mmk12: row {i} of {r['_file']} has neither `question` (the published card) nor "
                             f"`problem` (EasyR1 layout)")
        img = decode_image(image, root)
        out.append(Sample(str(r.get("id", i)), str(question).replace("<image>", "").strip(),
                          [img] if img is not None else [], "math", str(r["answer"]), {"subject": r.get("subject")}))
    return out


def score_mmk12(s: Sample, answer: str) -> float:
    gold = s.gold.strip()
    if len(gold) == 1 and gold.isalpha():  # a choice question: the option letter
        return float(choice_correct(answer, gold))
    return float(math_correct(answer, gold))


MMK12 = Benchmark(
    "mmk12", "MMK12", "FanqingM/MMK12", "test", "accuracy", False,
    "official (MM-Eureka): rule-based equivalence; here option letter for choice answers, math-verify otherwise",
    load_mmk12, score_mmk12)
