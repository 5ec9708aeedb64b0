"""Multi-task answer scoring and response-length shaping (OpenVLThinkerV2). See docs/rewards.md."""

from .length import (
    DEFAULT_LENGTH_FRACTIONS,
    LengthThresholds,
    length_reward,
    length_reward_batch,
    thresholds_for_task,
)
from .scorers import (
    DOMAIN_TO_TASK,
    EXTRA_INFO_KEYS,
    SCORERS,
    ScoreResult,
    compute_score,
    overall_score,
    resolve_task,
    score,
    score_counting,
    score_grounding,
    score_math,
    score_multiple_choice,
    score_numerical,
    score_ocr,
    score_regression,
)
from .templates import TEMPLATES, Template, get_template, register_template

__all__ = [
    "DEFAULT_LENGTH_FRACTIONS",
    "DOMAIN_TO_TASK",
    "EXTRA_INFO_KEYS",
    "LengthThresholds",
    "SCORERS",
    "ScoreResult",
    "TEMPLATES",
    "Template",
    "compute_score",
    "get_template",
    "length_reward",
    "length_reward_batch",
    "overall_score",
    "register_template",
    "resolve_task",
    "score",
    "score_counting",
    "score_grounding",
    "score_math",
    "score_multiple_choice",
    "score_numerical",
    "score_ocr",
    "score_regression",
    "thresholds_for_task",
]
