"""Benchmarks, the papers' benchmark lists and their published numbers (from the papers' tables only; a number
a paper does not print per benchmark is None and shows as blank)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .base import Benchmark
from .documents import CHARTQA, CHARXIV, DOCVQA, OCRBENCH
from .general import HALLUSIONBENCH, MMMU
from .grounding import REFCOCO
from .math_benchmarks import MATHVERSE, MATHVISION, MATHVISTA, MMK12, OLYMPIADBENCH, WEMATH

__all__ = ["BENCHMARKS", "PAPERS", "Paper", "get_benchmark"]

BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in (
    MMMU, MATHVISTA, MATHVERSE, MATHVISION, CHARTQA, CHARXIV, DOCVQA, OCRBENCH, REFCOCO, WEMATH, HALLUSIONBENCH,
    OLYMPIADBENCH, MMK12)}


@dataclass(frozen=True)
class Paper:
    """The recipe's paper: its benchmarks, the method's numbers and the baseline the paper compares with."""

    recipe: str
    title: str
    method: str
    baseline: str
    benchmarks: tuple[str, ...]
    numbers: dict[str, float | None]
    baseline_numbers: dict[str, float | None]
    average: float | None = None
    baseline_average: float | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)


PAPERS: dict[str, Paper] = {
    "openvlthinker_v2": Paper(
        "openvlthinker_v2", "OpenVLThinkerV2 (arXiv 2604.08539)", "OpenVLThinkerV2 (Qwen3-VL-8B)",
        "same-data GRPO",
        ("mmmu", "mathvista", "mathverse", "mathvision", "chartqa", "charxiv", "docvqa", "ocrbench", "refcoco"),
        {"mmmu": 71.6, "mathvista": 79.5, "mathverse": 65.8, "mathvision": 53.4, "chartqa": 87.4, "charxiv": 53.0,
         "docvqa": 96.7, "ocrbench": 911, "refcoco": 93.4},
        {"mmmu": 69.7, "mathvista": 78.1, "mathverse": 64.7, "mathvision": 52.6, "chartqa": 82.4, "charxiv": 50.5,
         "docvqa": 95.9, "ocrbench": 875, "refcoco": 92.1},
        notes=("The paper prints no average over these benchmarks.",)),
    "durian": Paper(
        "durian", "Durian (arXiv 2602.21743)", "Durian on GRPO (Qwen2.5-VL-7B, Geometry3K)", "GRPO",
        ("mathverse", "mathvision", "mathvista", "wemath", "hallusionbench"),
        {"mathverse": 52.8, "mathvision": 28.8, "mathvista": 72.3, "wemath": 69.2, "hallusionbench": 72.9},
        {"mathverse": 49.6, "mathvision": 26.8, "mathvista": 70.2, "wemath": 68.2, "hallusionbench": 69.8},
        average=59.2, baseline_average=56.9,
        notes=("Durian on DAPO: 51.9 / 29.0 / 72.2 / 71.8 / 71.4 (avg 59.3); base Qwen2.5-VL-7B avg 53.3.",)),
    "diva_grpo": Paper(
        "diva_grpo", "DIVA-GRPO (arXiv 2603.01106)", "DIVA-GRPO (Qwen2.5-VL-7B)", "Qwen2.5-VL-7B (base)",
        ("mathvista", "mathverse", "mathvision", "olympiadbench", "wemath", "mmk12"),
        dict.fromkeys(("mathvista", "mathverse", "mathvision", "olympiadbench", "wemath", "mmk12")),
        dict.fromkeys(("mathvista", "mathverse", "mathvision", "olympiadbench", "wemath", "mmk12")),
        average=54.58, baseline_average=46.23,
        notes=("Only DIVA-GRPO's six-benchmark average (54.58 as printed; its six printed scores average 54.42) "
               "and the base model's (46.23) are recorded here: per-benchmark cells are blank.",)),
}


def get_benchmark(name: str) -> Benchmark:
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(sorted(BENCHMARKS))}") from None
