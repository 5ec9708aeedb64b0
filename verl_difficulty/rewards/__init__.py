"""Multi-task answer scoring and response-length shaping (OpenVLThinkerV2). See docs/rewards.md.

Rooms: result.py (ScoreResult, overall reward), answers.py (input hygiene, the scorer frame), numbers.py
(number parsing), scorers/ (one module per answer kind), tasks.py (task tables, dispatch), multitask.py (one
trajectory's reward), entry.py (verl's ``compute_score``), openvlthinker_v2.py (the authors' preset),
templates.py (response formats), length.py (length shaping), math_guard.py (bounded math_verify).
"""

from . import scorers
from .entry import compute_score
from .length import (
    DEFAULT_LENGTH_FRACTIONS,
    LengthThresholds,
    length_reward,
    length_reward_batch,
    thresholds_for_task,
)
from .result import EXTRA_INFO_KEYS, ScoreResult, overall_score
from .scorers import *  # noqa: F403 (every scorer; the names are scorers.__all__)
from .tasks import DOMAIN_TO_TASK, SCORERS, resolve_task, score
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
    "thresholds_for_task",
]
__all__ += [name for name in scorers.__all__ if name not in __all__]
