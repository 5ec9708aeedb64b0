"""The project's answer-type scorers, one module per kind of answer. Each is a pure function
``(response, ground_truth, **options) -> ScoreResult`` that never raises on model output (answers.py);
tasks.py maps task labels to them.

``compute_score`` is re-exported here because ``pkg://verl_difficulty.rewards.scorers`` is a documented
``reward.custom_reward_function.path`` (entry.py holds it).
"""

from ..entry import compute_score
from .choice import score_multiple_choice
from .grounding import box_iou, max_weight_matching, score_grounding
from .math_expr import score_math
from .numeric import score_counting, score_numerical, score_regression
from .ocr import score_ocr, word_error_rate

__all__ = [
    "box_iou",
    "compute_score",
    "max_weight_matching",
    "score_counting",
    "score_grounding",
    "score_math",
    "score_multiple_choice",
    "score_numerical",
    "score_ocr",
    "score_regression",
    "word_error_rate",
]
