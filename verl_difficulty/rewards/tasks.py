"""Task tables: answer type -> scorer (SCORERS), aliases, domains and data_source hints -> answer type,
``resolve_task`` (a row's task label and answer type) and ``score`` (dispatch by task type). Also the scorer
options a reward config may set and the extra_info keys that set them per row."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from . import scorers
from .result import ScoreResult

__all__ = ["DATA_SOURCE_HINTS", "DOMAIN_TO_TASK", "PER_SAMPLE_OPTIONS", "SCORERS", "SCORER_OPTIONS", "TASK_ALIASES",
           "resolve_task", "score"]

SCORERS: dict[str, Callable[..., ScoreResult]] = {
    "multiple_choice": scorers.score_multiple_choice,
    "numerical": scorers.score_numerical,
    "regression": scorers.score_regression,
    "math": scorers.score_math,
    "ocr": scorers.score_ocr,
    "grounding": scorers.score_grounding,
    "counting": scorers.score_counting,
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


# extra_info keys a row may carry -> the scorer option they set for that row
PER_SAMPLE_OPTIONS = {"choices": "choices", "options": "choices", "image_size": "image_size", "template": "template"}
# every option some scorer reads (the rest of a reward_kwargs node is a mistake: see multitask.py)
SCORER_OPTIONS = frozenset({
    "template", "max_response_chars", "max_answer_chars", "abs_tol", "rel_tol", "zero_tol", "decimals", "choices",
    "coord_max", "image_size", "structure_bonus", "math_timeout_s", "ocr_max_words",
})
