"""General and hallucination benchmarks: MMMU (validation), HallusionBench (image split)."""

from __future__ import annotations

from pathlib import Path

from .base import Benchmark, group_scores
from .io import Sample, as_list, decode_image, letters, read_rows
from .scoring import choice_or, norm_text, parse_number, yes_no

__all__ = ["MMMU", "HALLUSIONBENCH"]


# ----------------------------------------------------------------------------------------------------- MMMU


def load_mmmu(root: Path, split: str, limit: int | None) -> list[Sample]:
    """MMMU/MMMU: one config folder per subject (``Accounting/validation-*.parquet`` ...); ``options`` is a
    string holding a Python list; images in ``image_1`` .. ``image_7``."""
    rows = read_rows(root, split, ("id", "question", "options", "answer", "question_type", "image_1"), "mmmu", limit)
    out = []
    for r in rows:
        options = [str(o) for o in as_list(r["options"])]
        mc = r["question_type"] == "multiple-choice"
        question = r["question"]
        if mc and options:
            question += "\n" + "\n".join(f"{ch}. {o}" for ch, o in zip(letters(len(options)), options))
        images = [decode_image(r.get(f"image_{k}"), root) for k in range(1, 8)]
        out.append(Sample(str(r["id"]), question, [im for im in images if im is not None],
                          "multiple choice" if mc else "open-ended", r["answer"], {"options": options, "mc": mc}))
    return out


def _open_correct(answer: str, gold) -> bool:
    """MMMU's open-question rule: any reference that is a number equals a number of the answer (2 decimals);
    a text reference is contained in the normalised answer."""
    pred_text, pred_num = norm_text(answer), parse_number(answer)
    for g in as_list(gold):
        g_num = parse_number(str(g))
        if g_num is not None and norm_text(str(g)).replace(",", "").lstrip("-").replace(".", "", 1).isdigit():
            if pred_num is not None and round(pred_num, 2) == round(g_num, 2):
                return True
        elif norm_text(str(g)) and norm_text(str(g)) in pred_text:
            return True
    return False


MMMU = Benchmark(
    "mmmu", "MMMU", "MMMU/MMMU", "validation", "accuracy", True,
    "official rule-based matching (MMMU's eval): option letter (or option text) for multiple choice; open "
    "questions: numbers equal to 2 decimals, text references contained in the answer; applied to the marked answer",
    load_mmmu, choice_or(_open_correct, "mc"))


# ------------------------------------------------------------------------------------------- HallusionBench


def load_hallusionbench(root: Path, split: str, limit: int | None) -> list[Sample]:
    rows = read_rows(root, split, ("category", "subcategory", "set_id", "figure_id", "question_id", "question",
                                   "gt_answer", "image"), "hallusionbench", limit)
    out = []
    for r in rows:
        key = (r["category"], r["subcategory"], str(r["set_id"]))
        image = decode_image(r["image"], root)
        out.append(Sample("_".join(map(str, (*key, r["figure_id"], r["question_id"]))), r["question"],
                          [image] if image is not None else [], "open-ended",
                          "yes" if str(r["gt_answer"]).strip() == "1" else "no",
                          {"figure": (*key, str(r["figure_id"])), "question": (*key, str(r["question_id"]))}))
    return out


def _hallusion_aggregate(samples: list[Sample], scores: list[float]) -> tuple[float, dict]:
    """aAcc (all questions) is the reported number; fAcc / qAcc: a figure / a question counts only when every
    one of its questions / figures is answered right (the benchmark's paired metrics)."""
    def all_right(key: str) -> float:
        groups = group_scores(samples, scores, key)
        return 100.0 * sum(all(x == 1.0 for x in g) for g in groups.values()) / len(groups)

    return 100.0 * sum(scores) / len(scores), {"fAcc": all_right("figure"), "qAcc": all_right("question")}


HALLUSIONBENCH = Benchmark(
    "hallusionbench", "HallusionBench", "lmms-lab/HallusionBench", "image", "aAcc", False,
    "official: GPT-4 judges yes/no against gt_answer; here the marked answer's yes/no by rule (first word, else "
    "a lone whole-word yes/no); aAcc reported, fAcc and qAcc in the JSON",
    load_hallusionbench, lambda s, a: float(yes_no(a) == s.gold), _hallusion_aggregate)
