"""The benchmark record: where the published data lives, how it is read, how an answer is scored."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .io import Sample

__all__ = ["Benchmark", "accuracy_by", "group_scores", "mean_percent"]


def mean_percent(samples: list[Sample], scores: list[float]) -> tuple[float, dict]:
    return (100.0 * sum(scores) / len(scores) if scores else float("nan")), {}


def group_scores(samples: list[Sample], scores: list[float], key: str) -> dict[Any, list[float]]:
    """The scores grouped by each sample's ``meta[key]``, in first-seen order."""
    groups: dict[Any, list[float]] = {}
    for sample, score in zip(samples, scores, strict=True):
        groups.setdefault(sample.meta[key], []).append(score)
    return groups


def accuracy_by(key: str) -> Callable[[list[Sample], list[float]], tuple[float, dict]]:
    """An aggregate: the overall accuracy, and ``acc_<group>`` for each value of ``meta[key]``."""
    def aggregate(samples: list[Sample], scores: list[float]) -> tuple[float, dict]:
        groups = sorted(group_scores(samples, scores, key).items())
        return mean_percent(samples, scores)[0], {f"acc_{k}": 100.0 * sum(v) / len(v) for k, v in groups}

    return aggregate


@dataclass(frozen=True)
class Benchmark:
    """name: the CLI key; dataset: the published Hugging Face dataset the loader reads; split: the split the
    papers report; exact: True when ``score`` is the benchmark's official rule (or the paper authors'),
    False when the official harness uses a GPT judge and ``score`` is a rule-based stand-in (``rule`` says
    which)."""

    name: str
    title: str
    dataset: str
    split: str
    metric: str
    exact: bool
    rule: str
    load: Callable[[Path, str, int | None], list[Sample]]
    score: Callable[[Sample, str], float]
    aggregate: Callable[[list[Sample], list[float]], tuple[float, dict]] = mean_percent
